//! Integration tests of chat-server over real TCP on 127.0.0.1, one binary for link time.

mod accounts;
mod bad_input;
mod behaviour;
mod harness;
mod irc;
mod moderation;
mod ops;
mod persistence;
mod security;
mod tls;
mod weechat;
