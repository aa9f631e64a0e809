//! chat-core: the wire protocol and the transport-agnostic state machines of the chat system.
//!
//! - [`protocol`]: the typed messages (protocol v1), the single source of truth for the wire.
//! - [`codec`]: JSON Lines framing with bounded lines, decoding from and encoding into the
//!   caller's buffers.
//! - [`hub`]: the server-side state machine (rooms, names, history, liveness, flood control).
//! - [`session`]: the client-side state machine every front-end shares.
//! - [`text`]: the one sanitiser that makes other people's text safe to show.
//! - [`fuzz`]: drivers that feed arbitrary bytes to the codec and the hub, for fuzzing.
//! - [`command`]: parsing of what the user types (`/join #rust`); [`input`]: Up/Down history.
//! - `client` (feature `tokio`, on by default): the async [`client::Transport`] trait, TCP and
//!   in-memory transports, and the reconnecting driver that runs a [`session::Session`].
//!
//! The state machines do no I/O and read no clock: the caller passes the time in
//! (milliseconds since the Unix epoch) and drains their outputs. With `default-features = false`
//! this crate does not depend on tokio at all.

#[cfg(feature = "args")]
pub mod args;
pub mod codec;
pub mod command;
pub mod fuzz;
pub mod hub;
pub mod input;
pub mod irc;
pub mod logs;
pub mod names;
pub mod password;
pub mod protocol;
pub mod session;
pub mod text;
#[cfg(feature = "tls")]
pub mod tls;

#[cfg(feature = "tokio")]
pub mod client;

pub use codec::{FrameError, LineDecoder};
pub use hub::{ConnId, Hub, HubConfig};
pub use protocol::{ClientMsg, ErrorCode, MsgId, ServerMsg, UnixMillis};
pub use session::{ConnState, Session, SessionConfig};
