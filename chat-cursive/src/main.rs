//! `chat-cursive`: the terminal UI binary: flags, the connect form, and the runtime that drives
//! the session while cursive owns the terminal.

use chat_core::args::{ClientArgs, SecurityArgs};
use chat_core::client::{self, TcpConnector};
use chat_core::protocol::Secret;
use chat_core::tls::{TlsOptions, Untrusted, check_certificate, explain};
use chat_core::{Session, SessionConfig};
use chat_cursive::Clock;
use clap::Parser;
use cursive::Cursive;
use cursive::traits::{Nameable, Resizable};
use cursive::views::{Dialog, EditView, LinearLayout, TextView};

/// Command-line flags, the same as chat-cli's; each is also an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(name = "chat-cursive", version, about = "A terminal chat client")]
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
    client: ClientArgs,
    #[command(flatten)]
    security: SecurityArgs,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        eprintln!(
            "chat-cursive: needs a terminal (stdin and stdout are not one); for pipes and scripts use chat-cli"
        );
        return std::process::ExitCode::from(1);
    }
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat-cursive: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Why the conversation logs stopped working, if they did: printed once the UI is gone.
static LOG_FAILURE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// What the user chose about highlights and the bell, for every session this run starts.
static PREFS: std::sync::OnceLock<ClientArgs> = std::sync::OnceLock::new();

fn run(args: &Args) -> anyhow::Result<()> {
    let _ = PREFS.set(args.client.clone());
    let runtime = tokio::runtime::Runtime::new()?;
    let _enter = runtime.enter();
    // Questions for the terminal (the password, a certificate to trust) come before the UI.
    let mut args = args.clone();
    let host = args.host.clone().unwrap_or_else(|| "127.0.0.1".into());
    let account = args
        .security
        .account_for(&host, args.port.unwrap_or(53000))?;
    let password = args.security.password()?;
    // Asked before the UI takes the screen: how wide this terminal draws emoji sequences.
    chat_cursive::set_clusters(chat_cursive::terminal::probe());
    let name = account.or_else(|| args.name.clone());
    let args = &args;
    let mut siv = cursive::default();
    match (&args.host, args.port, name) {
        (Some(host), Some(port), Some(name)) => {
            let connector =
                runtime.block_on(chat_core::args::connector(&args.security, host, port))?;
            start(&mut siv, connector, &name, password, args.room.clone());
        }
        _ => connect_form(&mut siv, args, password),
    }
    // Two refresh ticks a second: cheap, and lets the layout follow terminal resizes.
    siv.set_fps(2);
    let pastes = chat_cursive::terminal::Pastes::default();
    let queue = pastes.clone();
    siv.add_global_callback(chat_cursive::terminal::paste_event(), move |siv| {
        let text = queue.lock().ok().and_then(|mut q| q.pop_front());
        if let Some(text) = text {
            chat_cursive::paste(siv, &text);
        }
    });
    let ran = siv
        .try_run_with(|| chat_cursive::terminal::PasteBackend::init(pastes))
        .map_err(|err| anyhow::anyhow!("cannot use this terminal: {err}"));
    // Leave cleanly however the UI ended: the server announces the quit to everyone.
    if let Some(app) = siv.take_user_data::<chat_cursive::App>() {
        let closed = app
            .handle
            .with_session(|s| matches!(s.state(), chat_core::ConnState::Closed { .. }));
        if !closed {
            app.handle.submit("/quit");
        }
        runtime.block_on(async {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), app.handle.flush()).await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        });
    }
    runtime.shutdown_background();
    if let Some(why) = LOG_FAILURE.get() {
        eprintln!("chat-cursive: {why}");
    }
    ran
}

/// Asks for host, port and name, with the usual defaults filled in.
fn connect_form(siv: &mut Cursive, args: &Args, password: Option<Secret>) {
    let host = args.host.clone().unwrap_or_else(|| "127.0.0.1".into());
    let port = args.port.unwrap_or(53000).to_string();
    let name = args
        .security
        .name_or(args.name.as_ref())
        .unwrap_or_default();
    let room = args.room.clone();
    let tls = args.security.tls_options();
    let submit = move |siv: &mut Cursive| {
        let get = |siv: &mut Cursive, id: &str| {
            siv.call_on_name(id, |v: &mut EditView| v.get_content().trim().to_string())
                .unwrap_or_default()
        };
        let (host, port, name) = (get(siv, "host"), get(siv, "port"), get(siv, "name"));
        let error = match port.parse::<u16>() {
            _ if host.is_empty() => Some("the host is empty".to_string()),
            Err(_) => Some(format!("{port:?} is not a port number")),
            _ if name.is_empty() => Some("type a name".to_string()),
            Ok(_) => None,
        };
        if let Some(error) = error {
            siv.call_on_name("form_error", |v: &mut TextView| v.set_content(error));
            return;
        }
        siv.pop_layer();
        let port = port.parse().unwrap_or(53000);
        connect_checked(siv, &tls, &host, port, name, password.clone(), room.clone());
    };
    // Enter in any field connects, as the Connect button does.
    let field = |label: &str, value: String, id: &str| {
        let on_enter = submit.clone();
        LinearLayout::horizontal()
            .child(TextView::new(format!("{label:>6} ")))
            .child(
                EditView::new()
                    .content(value)
                    .on_submit(move |siv, _| on_enter(siv))
                    .with_name(id)
                    .fixed_width(24),
            )
    };
    let form = LinearLayout::vertical()
        .child(field("host", host, "host"))
        .child(field("port", port, "port"))
        .child(field("name", name, "name"))
        .child(TextView::new("").with_name("form_error"));
    siv.add_layer(
        Dialog::around(form)
            .title("Connect to a chat server")
            .button("Connect", submit)
            .button("Quit", |siv| siv.quit()),
    );
    siv.focus_name("name").ok();
}

/// Checks the server's certificate, asks about an unknown self-signed one in a dialog, then
/// starts.
fn connect_checked(
    siv: &mut Cursive,
    tls: &TlsOptions,
    host: &str,
    port: u16,
    name: String,
    password: Option<Secret>,
    room: Option<String>,
) {
    let connector = match tls.connector(host, port, None) {
        Ok(c) => c,
        Err(err) => {
            siv.add_layer(Dialog::info(format!("Cannot connect: {err}")));
            return;
        }
    };
    let runtime = tokio::runtime::Handle::current();
    match runtime.block_on(check_certificate(&connector)) {
        None => start(siv, connector, &name, password, room),
        Some(Untrusted::Unknown { fingerprint }) => {
            let text = explain(
                &connector.addr,
                &Untrusted::Unknown {
                    fingerprint: fingerprint.clone(),
                },
            );
            let (tls, host) = (tls.clone(), host.to_string());
            siv.add_layer(
                Dialog::text(text)
                    .title("Unknown certificate")
                    .button("Trust and remember", move |siv| {
                        siv.pop_layer();
                        match tls.connector(&host, port, Some(fingerprint.clone())) {
                            Ok(c) => start(siv, c, &name, password.clone(), room.clone()),
                            Err(err) => siv.add_layer(Dialog::info(format!("{err}"))),
                        }
                    })
                    .button("Quit", |siv| siv.quit()),
            );
        }
        Some(changed) => {
            siv.add_layer(
                Dialog::text(explain(&connector.addr, &changed))
                    .title("Certificate changed")
                    .button("Quit", |siv| siv.quit()),
            );
        }
    }
}

/// Starts the client driver and shows the chat screen.
fn start(
    siv: &mut Cursive,
    connector: TcpConnector,
    name: &str,
    password: Option<Secret>,
    room: Option<String>,
) {
    let redraw = chat_cursive::refresher(siv.cb_sink().clone());
    let prefs = PREFS.get().cloned().unwrap_or_default();
    let bell = !prefs.no_bell;
    let logger = prefs.logger(&connector.addr).map(std::sync::Mutex::new);
    let config = SessionConfig {
        autojoin: room.into_iter().collect(),
        highlights: prefs.highlight.clone(),
        ..SessionConfig::default()
    };
    let mut session = Session::new(config, name);
    if let Some(password) = password {
        session.set_account(name, password);
    }
    let (handle, _task) = client::spawn(connector, session, move |events| {
        if let Some(logger) = &logger
            && let Ok(mut logger) = logger.lock()
            && let Some(why) = logger.record(events)
        {
            // The screen is cursive's: said after the UI ends.
            let _ = LOG_FAILURE.set(why);
        }
        if bell && chat_cursive::rings_bell(events) {
            // The bell goes straight to the terminal: cursive has no call for it.
            use std::io::Write;
            if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
                let _ = tty.write_all(b"\x07");
            }
        }
        redraw()
    });
    chat_cursive::build(siv, handle, Clock::Local);
}
