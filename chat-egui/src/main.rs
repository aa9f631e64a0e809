//! `chat-egui`: the desktop client binary: flags, the tokio runtime for the network driver, and
//! the eframe window.

use chat_core::client::{self, TcpConnector};
use chat_core::{Session, SessionConfig};
use chat_egui::{ChatApp, Clock};
use clap::Parser;

/// Command-line flags, the same as chat-cli's; each is also an environment variable. With host,
/// port and name all given, the connect screen is skipped.
#[derive(Debug, Parser)]
#[command(name = "chat-egui", version, about = "A desktop chat client")]
struct Args {
    /// Server host.
    #[arg(long, env = "CHAT_HOST")]
    host: Option<String>,
    /// Server port.
    #[arg(long, env = "CHAT_PORT")]
    port: Option<u16>,
    /// Your name.
    #[arg(long, env = "CHAT_NAME")]
    name: Option<String>,
    /// A room to join after connecting.
    #[arg(long, env = "CHAT_ROOM")]
    room: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let _enter = runtime.enter();
    let auto = args.host.is_some() && args.port.is_some() && args.name.is_some();
    let host = args.host.clone().unwrap_or_else(|| "127.0.0.1".into());
    let port = args.port.unwrap_or(53000);
    let name = args.name.clone().unwrap_or_default();
    let room = args.room.clone();
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title("chat")
            .with_inner_size([900.0, 600.0]),
        ..Default::default()
    };
    let handle = runtime.handle().clone();
    eframe::run_native(
        "chat",
        options,
        Box::new(move |cc| {
            let connect: chat_egui::Connect = Box::new(move |addr, name, ctx| {
                let _enter = handle.enter();
                let ctx = ctx.clone();
                let config = SessionConfig {
                    autojoin: room.iter().cloned().collect(),
                    ..SessionConfig::default()
                };
                let (client, _task) = client::spawn(
                    TcpConnector::new(addr),
                    Session::new(config, name),
                    move |_events| ctx.request_repaint(),
                );
                client
            });
            Ok(Box::new(ChatApp::new(
                connect,
                Clock::Local,
                &host,
                port,
                &name,
                auto,
                &cc.egui_ctx,
            )))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
    // Let the driver deliver the quit sent when the window closed.
    runtime.block_on(tokio::time::sleep(std::time::Duration::from_millis(300)));
    runtime.shutdown_background();
    Ok(())
}
