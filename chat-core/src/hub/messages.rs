//! Room messages, actions and direct messages: validation, then sequencing.

use super::*;

/// What a client sends as a message, to a room or a user.
#[derive(Debug, Clone, Default)]
pub(super) struct Body {
    pub text: String,
    pub action: bool,
    pub notice: bool,
    pub tags: ClientTags,
    /// Sent as tags alone (`tag`, IRC's TAGMSG): the only kind that may have no text.
    pub only_tags: bool,
}

impl Body {
    /// Whether the message is kept (see [`ChatMessage::kept`]).
    pub fn kept(&self) -> bool {
        crate::protocol::kept(&self.text, &self.tags)
    }

    /// What it weighs in the store's queue.
    pub fn weight(&self) -> usize {
        64 + self.text.len()
            + self
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.len() + 3)
                .sum::<usize>()
    }
}

impl Hub {
    pub(super) fn cmd_say(&mut self, conn: ConnId, raw: &str, body: Body, cid: Option<String>) {
        let Some((key, _)) = self.speaking_room(conn, raw) else {
            return;
        };
        if !self.may_speak(conn, &key) {
            return;
        }
        if !self.valid_body(conn, &body) {
            return;
        }
        let kept = body.kept();
        if kept && !self.store_can_take(conn, body.weight()) {
            return;
        }
        let id = self.take_id();
        let ts = self.stamp();
        if kept {
            self.counters.messages += 1;
        }
        let msg = ChatMessage {
            id,
            ts,
            room: self.rooms[&key].name.clone(),
            from: self.name_of(conn),
            text: body.text,
            action: body.action,
            notice: body.notice,
            bot: self.conns.get(&conn).is_some_and(|c| c.bot),
            tags: body.tags,
        };
        if let Some(cid) = &cid {
            self.remember_cid(cid.clone(), id);
        }
        if !kept {
            // Relayed in order behind what is being committed, and not kept.
            self.sequence_unkept(Pending::Room {
                msg,
                from: conn,
                cid,
            });
            return;
        }
        if self.config.durable {
            self.outputs.push_back(Output::Store(Record::Message {
                msg: msg.clone(),
                cid: cid.clone(),
            }));
        }
        self.sequence(
            id,
            Pending::Room {
                msg,
                from: conn,
                cid,
            },
        );
    }

    pub(super) fn cmd_direct(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        raw: &str,
        body: Body,
        cid: Option<String>,
    ) {
        let target = names::normalize_name(raw).ok().and_then(|n| {
            self.names
                .get(&names::key(&n))
                .and_then(|h| h.first())
                .copied()
        });
        let Some(target) = target else {
            if self.direct_offline(now, conn, raw, body, cid) {
                return;
            }
            self.reply(
                conn,
                &error(
                    ErrorCode::NoSuchUser,
                    &format!("nobody called {raw} is here"),
                ),
            );
            return;
        };
        if !self.valid_body(conn, &body) {
            return;
        }
        if !self.direct_allowed(now, conn, target) {
            return;
        }
        let kept = body.kept();
        if kept && !self.store_can_take(conn, body.weight()) {
            return;
        }
        let to = self.name_of(target);
        let direct = self.new_direct(conn, to, body, &cid, false);
        let id = direct.id;
        let msg = direct.message();
        let pending = Pending::Direct {
            msg,
            from: conn,
            to: [
                vec![conn],
                self.other_devices(conn),
                vec![target],
                self.other_devices(target),
            ]
            .concat(),
            cid,
        };
        if kept {
            self.sequence(id, pending);
            self.tell_if_away(conn, target);
        } else {
            self.sequence_unkept(pending);
        }
    }

    /// Checks a message's text (see [`Hub::valid_text`]) and tags; a message of tags alone has
    /// no text and at least one tag.
    pub(super) fn valid_body(&mut self, conn: ConnId, body: &Body) -> bool {
        let problem = if let Some(problem) = crate::protocol::tags_problem(&body.tags) {
            Some(problem)
        } else if body.only_tags && body.tags.is_empty() {
            Some("a message of tags alone needs at least one tag".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            self.reply(conn, &error(ErrorCode::Malformed, &problem));
            return false;
        }
        body.only_tags || self.valid_text(conn, &body.text)
    }

    pub(super) fn valid_text(&mut self, conn: ConnId, text: &str) -> bool {
        let problem = if text.trim().is_empty() {
            Some((ErrorCode::EmptyText, "the message is empty".to_string()))
        } else if text.len() > self.config.max_text {
            Some((
                ErrorCode::TextTooLong,
                format!(
                    "the message is {} bytes; the limit is {}",
                    text.len(),
                    self.config.max_text
                ),
            ))
        } else if text.lines().count() > self.config.max_text_lines {
            Some((
                ErrorCode::TooManyLines,
                format!(
                    "the message has {} lines; the limit is {}",
                    text.lines().count(),
                    self.config.max_text_lines
                ),
            ))
        } else {
            None
        };
        match problem {
            Some((code, message)) => {
                self.reply(conn, &error(code, &message));
                false
            }
            None => true,
        }
    }
}
