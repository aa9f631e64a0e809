//! Plain-text logs of conversations on disk, one file per conversation, as weechat's logger
//! writes them: `DIR/<server>/<conversation>.log`, one line per event,
//! `2026-11-26 10:00:00<TAB>nick<TAB>text` (`*` as the nick for an action, `--` for notices,
//! `-->`/`<--` for joins and parts). Lines are the session's, so other people's control
//! characters are already visible symbols; line breaks inside a message continue on lines that
//! start with a tab. History shown at join is not logged again (it was logged when it happened,
//! or was before this client's time); what a reconnect caught up is.
//!
//! Writing is best effort: a log that cannot be written is reported once, to the front-end
//! (which shows it where it can: the terminal UI owns the screen), and the chat goes on.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::names;
use crate::session::{Event, Line, LineKind};

/// Appends conversation lines to files under a directory.
#[derive(Debug)]
pub struct Logger {
    dir: PathBuf,
    files: HashMap<String, File>,
    /// Why writing stopped, once it has.
    failure: Option<String>,
    local_time: bool,
}

impl Logger {
    /// Logs under `dir/server` (created when the first line is written). Timestamps are local
    /// time, or UTC with `local_time` false.
    pub fn new(dir: &Path, server: &str, local_time: bool) -> Logger {
        Logger {
            dir: dir.join(file_name(server)),
            files: HashMap::new(),
            failure: None,
            local_time,
        }
    }

    /// Logs what these events add to conversations. Returns why logging stopped working, the
    /// first time it does.
    pub fn record(&mut self, events: &[Event]) -> Option<String> {
        let failed = self.failure.is_some();
        for event in events {
            if let Event::Line {
                conversation,
                line,
                history: false,
            } = event
            {
                let name = conversation.as_deref().unwrap_or("server");
                self.write(name, line);
            }
        }
        if failed { None } else { self.failure.clone() }
    }

    fn write(&mut self, conversation: &str, line: &Line) {
        let text = format_line(line, self.local_time);
        let key = names::key(conversation);
        if !self.files.contains_key(&key) {
            let path = self.dir.join(format!("{}.log", file_name(&key)));
            let opened = std::fs::create_dir_all(&self.dir)
                .and_then(|()| OpenOptions::new().create(true).append(true).open(&path));
            match opened {
                Ok(file) => {
                    self.files.insert(key.clone(), file);
                }
                Err(err) => {
                    self.fail(&format!("cannot open {}: {err}", path.display()));
                    return;
                }
            }
        }
        if let Some(file) = self.files.get_mut(&key)
            && let Err(err) = file.write_all(text.as_bytes())
        {
            self.fail(&format!("cannot write the log of {conversation}: {err}"));
        }
    }

    fn fail(&mut self, why: &str) {
        if self.failure.is_none() {
            self.failure = Some(format!("logging stopped working: {why}"));
        }
    }
}

/// One logged line (with its newline): time, who, what.
pub fn format_line(line: &Line, local_time: bool) -> String {
    let time = chrono::DateTime::from_timestamp_millis(line.ts as i64)
        .map(|t| {
            if local_time {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            } else {
                t.format("%Y-%m-%d %H:%M:%S").to_string()
            }
        })
        .unwrap_or_default();
    let (who, what) = match &line.kind {
        LineKind::Message { from, text } => (from.clone(), text.clone()),
        LineKind::Action { from, text } => ("*".to_string(), format!("{from} {text}")),
        LineKind::Join { name } => ("-->".to_string(), format!("{name} joined")),
        LineKind::Part { name, reason } => (
            "<--".to_string(),
            match reason {
                Some(r) => format!("{name} left ({r})"),
                None => format!("{name} left"),
            },
        ),
        LineKind::Quit { name, reason } => ("<--".to_string(), format!("{name} quit ({reason})")),
        LineKind::Nick { old, new } => ("--".to_string(), format!("{old} is now known as {new}")),
        LineKind::Topic { by, topic } => (
            "--".to_string(),
            match by {
                Some(by) => format!("{by} set the topic: {topic}"),
                None => format!("topic: {topic}"),
            },
        ),
        LineKind::Notice(text) => ("--".to_string(), text.clone()),
        LineKind::Error(text) => ("!!".to_string(), text.clone()),
    };
    // Continuation lines start with a tab, so every log line still begins with a time.
    format!("{time}\t{who}\t{}\n", what.replace('\n', "\n\t\t"))
}

/// A name safe as one path component: letters, digits and `#-_` kept, the rest (dots and
/// slashes among them) as `_`.
fn file_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '#' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "_".to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Line;

    fn line(kind: LineKind) -> Line {
        Line {
            id: None,
            ts: 1_700_000_000_000,
            mention: false,
            kind,
            notice: false,
            reply: None,
            reactions: Vec::new(),
        }
    }

    #[test]
    fn lines_are_written_per_conversation_as_weechat_does() {
        let dir = std::env::temp_dir().join(format!("chat-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut logger = Logger::new(&dir, "chat.example.org:53000", false);
        let said = |conversation: &str, kind: LineKind, history: bool| Event::Line {
            conversation: Some(conversation.into()),
            line: line(kind),
            history,
        };
        logger.record(&[
            said(
                "#Rust",
                LineKind::Message {
                    from: "bob".into(),
                    text: "hi\nsecond".into(),
                },
                false,
            ),
            said(
                "#rust",
                LineKind::Action {
                    from: "ann".into(),
                    text: "waves".into(),
                },
                false,
            ),
            said(
                "#rust",
                LineKind::Message {
                    from: "old".into(),
                    text: "history is not logged again".into(),
                },
                true,
            ),
            said(
                "../../etc/passwd",
                LineKind::Message {
                    from: "x".into(),
                    text: "y".into(),
                },
                false,
            ),
        ]);
        let server = dir.join("chat_example_org_53000");
        let rust = std::fs::read_to_string(server.join("#rust.log")).unwrap();
        assert_eq!(
            rust,
            "2023-11-14 22:13:20\tbob\thi\n\t\tsecond\n2023-11-14 22:13:20\t*\tann waves\n"
        );
        // A name cannot leave the directory.
        let names: Vec<String> = std::fs::read_dir(&server)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains('/')), "{names:?}");
        assert!(
            names.contains(&"______etc_passwd.log".to_string()),
            "{names:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_that_cannot_be_written_is_reported_once() {
        // A file where the directory should be.
        let blocker = std::env::temp_dir().join(format!("chat-logs-file-{}", std::process::id()));
        std::fs::write(&blocker, "x").unwrap();
        let mut logger = Logger::new(&blocker, "server", false);
        let said = [Event::Line {
            conversation: Some("#a".into()),
            line: line(LineKind::Notice("hi".into())),
            history: false,
        }];
        let why = logger.record(&said).expect("the failure is reported");
        assert!(
            why.starts_with("logging stopped working: cannot open"),
            "{why}"
        );
        assert_eq!(logger.record(&said), None, "once, not on every line");
        std::fs::remove_file(&blocker).unwrap();
    }
}
