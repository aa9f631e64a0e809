//! A small bot on chat-core: it joins #lobby and answers `!ping` with `pong`, `!rooms` with the
//! rooms it is in. Run it against a server: `cargo run -p chat-core --example echo_bot -- 127.0.0.1:53000`.

use chat_core::client::{self, TcpConnector};
use chat_core::session::{Event, LineKind};
use chat_core::{Session, SessionConfig};

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:53000".into());
    // The session holds all client logic (rooms, scrollback, reconnects); the driver does I/O.
    let session = Session::new(SessionConfig::default(), "echo-bot");
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (handle, done) = client::spawn(TcpConnector::new(addr), session, move |batch| {
        for event in batch {
            let _ = events_tx.send(event.clone());
        }
    });
    while let Some(event) = events.recv().await {
        // History shown at join is old news: answer only what is said from now on.
        let Event::Line {
            conversation: Some(room),
            line,
            history: false,
        } = event
        else {
            continue;
        };
        let LineKind::Message { from, text } = line.kind else {
            continue;
        };
        let me = handle.with_session(|s| s.name().map(String::from));
        if line.id.is_none() || me.as_deref() == Some(from.as_str()) {
            continue;
        }
        let reply = match text.trim() {
            "!ping" => format!("{from}: pong"),
            "!rooms" => handle.with_session(|s| {
                let rooms: Vec<String> = s.conversations().map(|c| c.name.clone()).collect();
                format!("{from}: I am in {}", rooms.join(", "))
            }),
            _ => continue,
        };
        // Plain text goes to the active conversation; switch to where the question was asked.
        handle.submit(format!("/switch {room}"));
        handle.submit(reply);
    }
    let _ = done.await;
}
