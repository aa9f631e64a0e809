//! The line editor of an interactive run: rustyline on its own thread, asked for one line at a
//! time, printing incoming lines above the prompt through its external printer (so what is being
//! typed is never split by them).

use std::sync::{Arc, Mutex, OnceLock};

use chat_core::client::ClientHandle;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Config, Context, Editor, ExternalPrinter, Helper};
use tokio::sync::{mpsc, oneshot};

/// A request for one line, with the prompt to show.
pub struct Ask {
    pub prompt: String,
    pub reply: oneshot::Sender<Option<String>>,
}

/// Where output goes while the editor runs.
static PRINTER: OnceLock<Mutex<Box<dyn ExternalPrinter + Send>>> = OnceLock::new();

/// Prints `line` above the prompt. False when no editor runs (print it plainly then).
pub fn print(line: &str) -> bool {
    let Some(printer) = PRINTER.get() else {
        return false;
    };
    if let Ok(mut p) = printer.lock() {
        let _ = p.print(format!("{line}\n"));
    }
    true
}

/// Completion candidates come from the session, once there is one.
#[derive(Clone, Default)]
pub struct Completions(Arc<Mutex<Option<ClientHandle>>>);

impl Completions {
    pub fn set(&self, handle: ClientHandle) {
        if let Ok(mut h) = self.0.lock() {
            *h = Some(handle);
        }
    }
}

struct ChatHelper(Completions);

impl Completer for ChatHelper {
    type Candidate = Pair;

    /// Tab completes the word before the cursor: nicks (with `: ` at the start of a line),
    /// rooms and commands.
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let handle = self.0.0.lock().ok().and_then(|h| h.clone());
        let Some(handle) = handle else {
            return Ok((pos, Vec::new()));
        };
        let before = &line[..pos];
        let Some(done) = handle.with_session(|s| chat_core::input::complete(s, before)) else {
            return Ok((pos, Vec::new()));
        };
        let start = done.start;
        // One candidate: its replacement. Several: the list to choose from (rustyline shows it
        // and completes their shared prefix).
        let pairs = if done.candidates.is_empty() {
            vec![Pair {
                display: done.replacement.trim_end_matches([':', ' ']).to_string(),
                replacement: done.replacement,
            }]
        } else {
            done.candidates
                .into_iter()
                .map(|c| Pair {
                    display: c.clone(),
                    replacement: c,
                })
                .collect()
        };
        Ok((start, pairs))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}
impl Highlighter for ChatHelper {}
impl Validator for ChatHelper {}
impl Helper for ChatHelper {}

/// The terminal's settings from before the editor ran, to put back at exit: the process may end
/// while the editor thread waits for a key in raw mode.
static SAVED: Mutex<Option<nix::sys::termios::Termios>> = Mutex::new(None);

/// Puts the terminal back as the editor found it (echo, line buffering).
pub fn restore_terminal() {
    if let Some(saved) = SAVED.lock().ok().and_then(|s| s.clone()) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &saved,
        );
    }
}

/// Starts the editor thread; each [`Ask`] sent to it reads one line.
pub fn start(completions: Completions) -> anyhow::Result<mpsc::UnboundedSender<Ask>> {
    let config = Config::builder()
        // Added by hand: a line with a password in it is not kept for Up to show.
        .auto_add_history(false)
        .bracketed_paste(true)
        .completion_type(rustyline::CompletionType::List)
        .build();
    if let Ok(saved) = nix::sys::termios::tcgetattr(std::io::stdin())
        && let Ok(mut slot) = SAVED.lock()
    {
        *slot = Some(saved);
    }
    let mut editor: Editor<ChatHelper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ChatHelper(completions)));
    let printer = editor.create_external_printer()?;
    let _ = PRINTER.set(Mutex::new(Box::new(printer)));
    let (asks, mut requests) = mpsc::unbounded_channel::<Ask>();
    std::thread::Builder::new()
        .name("line-editor".into())
        .spawn(move || {
            while let Some(ask) = requests.blocking_recv() {
                let line = match editor.readline(&ask.prompt) {
                    Ok(line) => {
                        if !line.trim().is_empty() && !chat_core::command::holds_secret(&line) {
                            let _ = editor.add_history_entry(line.as_str());
                        }
                        Some(line)
                    }
                    // Ctrl-C and Ctrl-D end the session, as in any shell.
                    Err(ReadlineError::Interrupted | ReadlineError::Eof) => None,
                    Err(_) => None,
                };
                let end = line.is_none();
                let _ = ask.reply.send(line);
                if end {
                    break;
                }
            }
        })?;
    Ok(asks)
}
