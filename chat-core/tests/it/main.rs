//! Integration tests of chat-core: hub transcripts, the client session, the codec's properties,
//! the protocol document, and the crate's dependency boundary. One binary keeps link times down.

mod codec_props;
mod deps;
mod driver;
mod names_props;
mod paging;
mod protocol_doc;
mod session;
mod transcript;
