//! `chat-cli`: a stdin/stdout client on chat-core's session and driver.
//!
//! In a terminal it is interactive: a line editor (rustyline: history on Up/Down, Tab
//! completion of nicks, rooms and commands, bracketed paste) keeps the prompt below incoming
//! lines; it asks for a name if none is given, prints events as readable timestamped lines
//! wrapped under their text, rings the bell on mentions and direct messages, asks before a
//! multi-line paste goes out as one message, and quits cleanly on `/quit`, Ctrl-D or Ctrl-C.
//! In a pipe it is a
//! tool: it sends each input line, waits until the server has acknowledged every message, and
//! exits 0 (`echo "deploy done" | chat-cli --name ci`). Lines go out at the pace the server's
//! flood limits allow, survive reconnects (each is delivered exactly once), and a line the
//! server refuses is named on stderr and makes the exit status 1. All protocol logic lives in
//! chat-core; other people's text is printed with its control characters made visible.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use chat_core::args::{ClientArgs, SecurityArgs};
use chat_core::client::{self, ClientHandle};
use chat_core::protocol::Secret;
use chat_core::session::{ConnState, Event, Line, LineKind, nick_colour};
use chat_core::text;
use chat_core::{Session, SessionConfig};
use clap::Parser;
use owo_colors::OwoColorize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

mod editor;

/// Command-line flags; each is also an environment variable.
#[derive(Debug, Parser)]
#[command(name = "chat-cli", version, about = "A stdin/stdout chat client")]
struct Args {
    /// Server host.
    #[arg(long, env = "CHAT_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, env = "CHAT_PORT", default_value_t = 53000)]
    port: u16,
    /// Your name; asked for when missing and stdin is a terminal.
    #[arg(long, env = "CHAT_NAME")]
    name: Option<String>,
    /// A room to join (and talk in) after connecting.
    #[arg(long, env = "CHAT_ROOM")]
    room: Option<String>,
    /// Print the server's messages as JSON lines instead of text.
    #[arg(long, env = "CHAT_JSON")]
    json: bool,
    /// Never use colours (NO_COLOR is honoured too).
    #[arg(long)]
    no_color: bool,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    security: SecurityArgs,
}

/// How long a piped run waits without any acknowledgement arriving before giving up.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("chat-cli: cannot start: {err}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chat-cli: {err:#}");
            ExitCode::from(1)
        }
    };
    // A blocking read of stdin cannot be cancelled; do not wait for it to return.
    runtime.shutdown_background();
    editor::restore_terminal();
    code
}

/// Where typed lines come from: the line editor in a terminal, plain lines from a pipe.
enum Input {
    Editor(mpsc::UnboundedSender<editor::Ask>),
    Lines(tokio::io::Lines<BufReader<tokio::io::Stdin>>),
}

impl Input {
    /// The next line, or `None` at the end of input (Ctrl-D, Ctrl-C, the end of a pipe).
    async fn line(&mut self, prompt: &str) -> anyhow::Result<Option<String>> {
        match self {
            Input::Lines(lines) => Ok(lines.next_line().await?),
            Input::Editor(asks) => {
                let (reply, answer) = oneshot::channel();
                if asks
                    .send(editor::Ask {
                        prompt: prompt.to_string(),
                        reply,
                    })
                    .is_err()
                {
                    return Ok(None);
                }
                Ok(answer.await.ok().flatten())
            }
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    let editing = interactive && std::io::stdout().is_terminal() && !args.json;
    let completer = editor::Completions::default();
    let mut stdin = if editing {
        Input::Editor(editor::start(completer.clone())?)
    } else {
        Input::Lines(BufReader::new(tokio::io::stdin()).lines())
    };
    let mut args = args;
    let account = args.security.account_for(&args.host, args.port)?;
    let password = args.security.password()?;
    let name = match account.or_else(|| args.name.clone()) {
        Some(name) => name,
        None if interactive => {
            if !editing {
                prompt("Your name: ");
            }
            stdin
                .line("Your name: ")
                .await?
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .context("no name given")?
        }
        None => bail!("--name (or CHAT_NAME) is required when stdin is not a terminal"),
    };
    let tty = std::io::stdout().is_terminal();
    let printer = Printer {
        colour: !args.no_color
            && !args.json
            && tty
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        json: args.json,
        // Only someone reading along wants the room's history and the bell.
        history: interactive,
        bell: interactive && tty && !args.client.no_bell,
        wrap: tty,
        in_history: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        me: Arc::new(std::sync::Mutex::new(name.clone())),
    };
    let config = SessionConfig {
        forward_server_messages: args.json,
        autojoin: args.room.iter().cloned().collect(),
        highlights: args.client.highlight.clone(),
        ..SessionConfig::default()
    };
    let connector = chat_core::args::connector(&args.security, &args.host, args.port).await?;
    let addr = connector.addr.clone();
    let mut session = Session::new(config, name.clone());
    if let Some(password) = password {
        session.set_account(&name, password);
    }
    let (state_tx, mut state) = watch::channel(ConnState::Connecting);
    let refused = Arc::new(AtomicU64::new(0));
    let refusals = refused.clone();
    let logger = args.client.logger(&addr).map(std::sync::Mutex::new);
    let (handle, mut task) = client::spawn(connector, session, move |events| {
        if let Some(logger) = &logger
            && let Ok(mut logger) = logger.lock()
            && let Some(why) = logger.record(events)
        {
            eprintln!("chat-cli: {why}");
        }
        // The new state is told after the batch's lines are out, so that a prompt it brings
        // (another name, a password) comes after the reason, not in the middle of it.
        let mut new_state = None;
        for event in events {
            printer.print(event);
            match event {
                Event::State(s) => new_state = Some(s.clone()),
                Event::Refused { input, reason, .. } if !interactive => {
                    refusals.fetch_add(1, Ordering::Relaxed);
                    eprintln!("chat-cli: line {input} was refused: {reason}");
                }
                _ => {}
            }
        }
        if let Some(s) = new_state {
            state_tx.send_replace(s);
        }
    });

    completer.set(handle.clone());

    // Connect and register, asking for another name as long as the server refuses one.
    loop {
        let current = state.borrow_and_update().clone();
        match current {
            ConnState::Online => break,
            // The session has printed why, and what can be typed.
            ConnState::NameRejected { account, .. } if interactive => {
                // The name is an account's: its password, typed unseen, logs in to it.
                if let Some(account) = account {
                    let ask = format!("Password for {account} (Enter to pick another name): ");
                    let password =
                        tokio::task::spawn_blocking(move || rpassword::prompt_password(ask))
                            .await??;
                    if !password.is_empty() {
                        let password = Secret::new(password);
                        handle.act(move |s, _now| s.set_account(&account, password));
                        if state.changed().await.is_err() {
                            bail!("the client stopped before connecting to {addr}");
                        }
                        continue;
                    }
                }
                if !editing {
                    prompt("Another name: ");
                }
                match stdin.line("Another name: ").await? {
                    Some(name) if !name.trim().is_empty() => handle.set_name(name.trim()),
                    _ => bail!("no name given"),
                }
            }
            ConnState::NameRejected { reason, .. } => bail!("name rejected: {reason}"),
            ConnState::Reconnecting { reason, .. } => bail!("{reason}"),
            ConnState::Closed { reason } => bail!("{reason}"),
            ConnState::Connecting | ConnState::Registering => {}
        }
        if state.changed().await.is_err() {
            bail!("the client stopped before connecting to {addr}");
        }
    }

    loop {
        // Where the next line goes, in the prompt: `[#lobby] > `.
        let prompt = handle.with_session(|s| {
            s.active()
                .map_or_else(|| "> ".to_string(), |c| format!("[{}] > ", c.name))
        });
        tokio::select! {
            line = stdin.line(&prompt) => match line {
                Ok(Some(line)) => {
                    if matches!(*state.borrow(), ConnState::NameRejected { .. }) {
                        // Another name, or `/login account password`: the session takes either.
                        handle.submit(line);
                    } else if line.contains('\n') {
                        // A multi-line paste: one message, after a yes (as weechat asks).
                        let count = line.lines().count();
                        let question = format!("Send {count} lines as one message? [y/N] ");
                        let yes = stdin
                            .line(&question)
                            .await?
                            .is_some_and(|a| a.trim().eq_ignore_ascii_case("y"));
                        if yes {
                            handle.act(move |s, now| s.handle_paste(now, &line));
                        } else {
                            out("-- not sent");
                        }
                    } else {
                        handle.submit(line);
                    }
                }
                // End of input: Ctrl-D in a terminal, the end of a pipe.
                Ok(None) | Err(_) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = &mut task => return Ok(exit_code(&handle)),
        }
    }
    if !interactive {
        wait_for_acks(&handle).await?;
    }
    handle.submit("/quit");
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    match refused.load(Ordering::Relaxed) {
        0 => Ok(ExitCode::SUCCESS),
        n => {
            eprintln!("chat-cli: {n} lines were refused by the server");
            Ok(ExitCode::from(1))
        }
    }
}

fn exit_code(handle: &ClientHandle) -> ExitCode {
    handle.with_session(|s| match s.state() {
        ConnState::Closed { .. } => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// Waits until the server has acknowledged (or refused) every message sent. Paced sending and
/// reconnects may take long; only [`ACK_TIMEOUT`] without any progress is a failure.
async fn wait_for_acks(handle: &ClientHandle) -> anyhow::Result<()> {
    handle.flush().await;
    let mut last = usize::MAX;
    let mut deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
    loop {
        let (unacked, online) = handle.with_session(|s| (s.unacked(), s.is_online()));
        if unacked == 0 && online {
            return Ok(());
        }
        if unacked < last {
            last = unacked;
            deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{unacked} messages were not acknowledged by the server in {} s",
                ACK_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prints one line to stdout. A closed stdout (`| head`) is not an error worth a panic: the
/// client keeps its promise to the server and quits normally.
fn out(line: &str) {
    if editor::print(line) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn prompt(text: &str) {
    eprint!("{text}");
    let _ = std::io::stderr().flush();
}

/// Turns session events into output lines.
#[derive(Debug, Clone)]
struct Printer {
    colour: bool,
    json: bool,
    /// Print room history (at join and `/history`); a pipe that only sends wants none.
    history: bool,
    /// Ring the terminal bell on mentions and direct messages.
    bell: bool,
    /// Wrap long lines to the terminal's width, continuing under the text.
    wrap: bool,
    /// True while the lines printed are history, to frame them.
    in_history: Arc<std::sync::atomic::AtomicBool>,
    /// The user's own name, shown in a style of its own.
    me: Arc<std::sync::Mutex<String>>,
}

/// Width of `[HH:MM] `, where wrapped lines continue.
const STAMP_WIDTH: usize = 8;

impl Printer {
    fn print(&self, event: &Event) {
        match event {
            Event::Server(msg) if self.json => {
                let json = serde_json::to_string(msg).unwrap_or_default();
                out(&text::escape_json_controls(&json));
            }
            Event::Line { history: true, .. } if !self.history => {}
            Event::Line {
                conversation,
                line,
                history,
            } if !self.json => {
                // History arrives after newer lines were printed: frame it, so it does not
                // read as new.
                let was = self.in_history.swap(*history, Ordering::Relaxed);
                if *history && !was {
                    let place = conversation.as_deref().unwrap_or("");
                    self.status(&format!("-- earlier messages in {place}:"));
                } else if !*history && was {
                    self.status("-- end of earlier messages");
                }
                out(&self.wrapped(&self.format(conversation.as_deref(), line)));
            }
            Event::Notify { .. } if self.bell => {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(b"\x07");
                let _ = stdout.flush();
            }
            // In JSON mode stdout carries only the server's messages; local news goes to stderr.
            Event::Line { line, .. } if matches!(line.kind, LineKind::Error(_)) => {
                eprintln!("{}", self.format(None, line));
            }
            Event::State(ConnState::Reconnecting {
                attempt,
                at,
                reason,
            }) => {
                let secs = at.saturating_sub(client::now_millis()).div_ceil(1000);
                self.status(&format!(
                    "-- {reason}; reconnecting in {secs}s (attempt {attempt})"
                ));
            }
            Event::Switched(Some(name)) if !self.json => {
                self.status(&format!("-- now talking in {name}"));
            }
            Event::Reacted {
                conversation,
                from,
                emoji,
                to,
            } if !self.json => {
                let place = if conversation.starts_with('#') {
                    format!("{conversation} ")
                } else {
                    format!("[{conversation}] ")
                };
                out(&self.wrapped(&format!(
                    "{place}-- {} reacted {emoji} to {}",
                    self.nick(from),
                    to.describe()
                )));
            }
            _ => {}
        }
    }

    /// A line wrapped to the terminal, continuation lines indented under the text.
    fn wrapped(&self, line: &str) -> String {
        if !self.wrap {
            return line.to_string();
        }
        let width = textwrap::termwidth().max(STAMP_WIDTH + 20);
        let options = textwrap::Options::new(width)
            .subsequent_indent("        ")
            .break_words(true);
        line.split('\n')
            .enumerate()
            .flat_map(|(i, part)| {
                let part = if i == 0 {
                    part.to_string()
                } else {
                    format!("        {}", part.trim_start())
                };
                textwrap::wrap(&part, &options)
                    .into_iter()
                    .map(|l| l.into_owned())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn status(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else if self.colour {
            out(&text.dimmed().to_string());
        } else {
            out(text);
        }
    }

    fn nick(&self, name: &str) -> String {
        if !self.colour {
            return name.to_string();
        }
        let me = self.me.lock().map(|m| m.clone()).unwrap_or_default();
        match nick_colour(name, Some(&me)) {
            Some(c) => name
                .color(owo_colors::XtermColors::from(c.xterm))
                .bold()
                .to_string(),
            // Your own name: bold in the text colour, like no one else's.
            None => name.bold().to_string(),
        }
    }

    fn format(&self, conversation: Option<&str>, line: &Line) -> String {
        let time = chrono::DateTime::from_timestamp_millis(line.ts as i64)
            .map(|t| t.with_timezone(&chrono::Local).format("%H:%M").to_string())
            .unwrap_or_default();
        let place = match conversation {
            Some(c) if c.starts_with('#') => format!("{c} "),
            Some(c) => format!("[{c}] "),
            None => String::new(),
        };
        // A mention is highlighted as a whole: its text in bold yellow, after the coloured nick
        // (styling the text itself keeps the nick's reset from ending the highlight).
        let said = |text: &str| {
            let text = text.replace('\n', "\n        ");
            if line.mention && self.colour {
                text.yellow().bold().to_string()
            } else {
                text
            }
        };
        // A reply names what it answers before its text.
        let quote = line
            .reply
            .as_ref()
            .map(|q| format!("[re {}] ", q.describe()))
            .unwrap_or_default();
        let body = match &line.kind {
            LineKind::Message { from, text } if line.notice => {
                format!("{place}-{}- {quote}{}", self.nick(from), said(text))
            }
            LineKind::Message { from, text } => {
                format!("{place}<{}> {quote}{}", self.nick(from), said(text))
            }
            LineKind::Action { from, text } => {
                format!("{place}* {} {}", self.nick(from), said(text))
            }
            LineKind::Join { name } => {
                format!("-> {} joined {}", self.nick(name), place.trim_end())
            }
            LineKind::Part { name, reason } => format!(
                "<- {} left {}{}",
                self.nick(name),
                place.trim_end(),
                reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            LineKind::Quit { name, reason } => {
                format!("<- {} quit ({reason})", self.nick(name))
            }
            LineKind::Nick { old, new } => {
                let text = format!("-- {} is now known as {}", self.nick(old), self.nick(new));
                if let Ok(mut me) = self.me.lock()
                    && chat_core::names::key(old) == chat_core::names::key(&me)
                {
                    *me = new.clone();
                }
                text
            }
            LineKind::Topic { by, topic } => match by {
                Some(by) => format!("-- {}topic set by {by}: {topic}", place),
                None => format!("-- {}topic: {topic}", place),
            },
            LineKind::Notice(text) => format!("-- {text}"),
            LineKind::Error(text) => {
                let text = format!("!! {text}");
                if self.colour {
                    text.red().to_string()
                } else {
                    text
                }
            }
        };
        let stamp = if self.colour {
            format!("[{time}]").dimmed().to_string()
        } else {
            format!("[{time}]")
        };
        format!("{stamp} {body}")
    }
}
