//! `chat-egui`: the desktop client binary: flags, the tokio runtime for the network driver, and
//! the eframe window.

use chat_core::SessionConfig;
use chat_core::args::{ClientArgs, SecurityArgs};
use chat_core::client::{self, TcpConnector};
use chat_core::tls::{TlsMode, check_certificate};
use chat_egui::{ChatApp, Clock, Form};
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
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    client: ClientArgs,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let (host, port) = (
        args.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
        args.port.unwrap_or(53000),
    );
    args.security.account_for(&host, port)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let _enter = runtime.enter();
    let auto = args.host.is_some()
        && args.port.is_some()
        && (args.name.is_some() || args.security.account.is_some());
    let host = args.host.clone().unwrap_or_else(|| "127.0.0.1".into());
    let port = args.port.unwrap_or(53000);
    let name = args
        .security
        .name_or(args.name.as_ref())
        .unwrap_or_default();
    let security = args.security.clone();
    let tls = match security.tls_options().mode {
        TlsMode::On => Some(true),
        TlsMode::Off => Some(false),
        TlsMode::Auto => None,
    };
    // A window has no terminal to ask on: the password comes from the environment, or the form.
    let password = args
        .security
        .account
        .as_ref()
        .and(std::env::var_os("CHAT_PASSWORD"))
        .map(|p| chat_core::protocol::Secret::new(p.to_string_lossy()));
    let room = args.room.clone();
    let prefs = args.client.clone();
    let attention = !prefs.no_bell;
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
            let connect: chat_egui::Connect = Box::new(move |request, ctx| {
                let _enter = handle.enter();
                let ctx = ctx.clone();
                let config = SessionConfig {
                    autojoin: room.iter().cloned().collect(),
                    highlights: prefs.highlight.clone(),
                    ..SessionConfig::default()
                };
                let mut options = security.tls_options();
                options.mode = if request.tls {
                    TlsMode::On
                } else {
                    TlsMode::Off
                };
                let connector = options
                    .connector(&request.host, request.port, request.accept.clone())
                    .unwrap_or_else(|_| {
                        TcpConnector::new(format!("{}:{}", request.host, request.port))
                    });
                if let Some(why) = handle.block_on(check_certificate(&connector)) {
                    return Err(why);
                }
                let logger = prefs
                    .logger(&format!("{}:{}", request.host, request.port))
                    .map(std::sync::Mutex::new);
                let (client, _task) =
                    client::spawn(connector, request.session(config), move |events| {
                        if let Some(logger) = &logger
                            && let Ok(mut logger) = logger.lock()
                            && let Some(why) = logger.record(events)
                        {
                            eprintln!("chat-egui: {why}");
                        }
                        ctx.request_repaint()
                    });
                Ok(client)
            });
            Ok(Box::new(
                ChatApp::new(
                    connect,
                    Clock::Local,
                    Form {
                        host: host.clone(),
                        port,
                        name: name.clone(),
                        password: password.clone(),
                        tls,
                    },
                    auto,
                    &cc.egui_ctx,
                )
                .with_attention(attention)
                .with_notifier(|summary, body| {
                    // D-Bus may be slow or absent (no notification daemon): never on the UI
                    // thread, and a failure costs nothing but the notification.
                    std::thread::spawn(move || {
                        // Notification servers read the body as markup: someone's `<a href>`
                        // or `<img>` stays text.
                        let body = chat_egui::notification_markup(&body);
                        let shown = notify_rust::Notification::new()
                            .appname("chat")
                            .summary(&summary)
                            .body(&body)
                            .show();
                        static SAID: std::sync::atomic::AtomicBool =
                            std::sync::atomic::AtomicBool::new(false);
                        if let Err(err) = shown
                            && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed)
                        {
                            eprintln!("chat-egui: desktop notifications do not work here: {err}");
                        }
                    });
                }),
            ))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
    // Let the driver deliver the quit sent when the window closed.
    runtime.block_on(tokio::time::sleep(std::time::Duration::from_millis(300)));
    runtime.shutdown_background();
    Ok(())
}
