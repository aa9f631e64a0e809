//! Room messages, actions and direct messages: validation, then sequencing.

use super::*;

impl Hub {
    pub(super) fn cmd_say(
        &mut self,
        conn: ConnId,
        raw: &str,
        text: String,
        action: bool,
        cid: Option<String>,
    ) {
        let Some((key, _)) = self.member_room(conn, raw) else {
            return;
        };
        if !self.may_speak(conn, &key) {
            return;
        }
        if !self.valid_text(conn, &text) {
            return;
        }
        if !self.store_can_take(conn, 64 + text.len()) {
            return;
        }
        let id = self.take_id();
        let ts = self.stamp();
        self.counters.messages += 1;
        let msg = ChatMessage {
            id,
            ts,
            room: self.rooms[&key].name.clone(),
            from: self.name_of(conn),
            text,
            action,
        };
        if let Some(cid) = &cid {
            self.remember_cid(cid.clone(), id);
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
        text: String,
        action: bool,
        cid: Option<String>,
    ) {
        let target = names::normalize_name(raw).ok().and_then(|n| {
            self.names
                .get(&names::key(&n))
                .and_then(|h| h.first())
                .copied()
        });
        let Some(target) = target else {
            if self.direct_offline(now, conn, raw, text, action, cid) {
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
        if !self.valid_text(conn, &text) {
            return;
        }
        if !self.direct_allowed(now, conn, target) {
            return;
        }
        if !self.store_can_take(conn, 64 + text.len()) {
            return;
        }
        let to = self.name_of(target);
        let direct = self.new_direct(conn, to, text, action, &cid, false);
        let id = direct.id;
        let msg = direct.message();
        self.sequence(
            id,
            Pending::Direct {
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
            },
        );
        self.tell_if_away(conn, target);
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
