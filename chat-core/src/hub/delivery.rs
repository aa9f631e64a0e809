//! Sequencing and delivery: ids, timestamps, holding id-bearing events until the store has
//! committed them, releasing them in id order, and the client ids (`cid`) that make sends
//! exactly-once.

use super::*;

/// A message waiting for the store's commit before it is delivered.
#[derive(Debug)]
pub(super) enum Pending {
    Room {
        msg: ChatMessage,
        /// The sender, to acknowledge (with its cid) or to tell that the message waits.
        from: ConnId,
        cid: Option<String>,
    },
    Direct {
        msg: ServerMsg,
        /// The sending connection, acknowledged.
        from: ConnId,
        /// Every device of the sender and of the recipient.
        to: Vec<ConnId>,
        cid: Option<String>,
    },
    /// An answer that must wait for the store: an account made, changed or deleted.
    Reply {
        conn: ConnId,
        msg: ServerMsg,
        /// The tag of the request it answers.
        tag: u64,
    },
    /// A repeat of a cid whose original is still waiting for its commit.
    Ack {
        conn: ConnId,
        cid: String,
        id: MsgId,
    },
    Topic {
        room_key: String,
        topic: String,
        by: String,
        ts: UnixMillis,
        from: ConnId,
    },
}

impl Pending {
    /// What holding it costs, in bytes, for [`HubConfig::max_held_bytes`] (acks cost nothing).
    pub(super) fn weight(&self) -> usize {
        match self {
            Pending::Room { msg, .. } => 64 + msg.text.len() + msg.room.len() + msg.from.len(),
            Pending::Direct { msg, .. } => match msg {
                ServerMsg::Direct { text, from, to, .. } => 64 + text.len() + from.len() + to.len(),
                _ => 64,
            },
            Pending::Topic { topic, by, .. } => 64 + topic.len() + by.len(),
            Pending::Ack { .. } | Pending::Reply { .. } => 0,
        }
    }

    /// True for a message held against [`HubConfig::max_held`] (not an acknowledgement or an
    /// answer).
    pub(super) fn is_held(&self) -> bool {
        !matches!(self, Pending::Ack { .. } | Pending::Reply { .. })
    }

    /// Who sent it.
    pub(super) fn sender(&self) -> ConnId {
        match self {
            Pending::Room { from, .. }
            | Pending::Direct { from, .. }
            | Pending::Topic { from, .. } => *from,
            Pending::Ack { conn, .. } | Pending::Reply { conn, .. } => *conn,
        }
    }
}

impl Hub {
    /// Runs a message-sending command under its cid: a repeat of a remembered cid gets the
    /// original acknowledgement instead; a bad cid is refused; any refusal names the cid.
    pub(super) fn with_cid(
        &mut self,
        conn: ConnId,
        cid: Option<String>,
        run: impl FnOnce(&mut Self, Option<String>),
    ) {
        if let Some(cid) = &cid {
            let valid = (1..=64).contains(&cid.len()) && cid.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                self.reply(
                    conn,
                    &ServerMsg::Error {
                        code: ErrorCode::Malformed,
                        message: "a cid is 1 to 64 printable ASCII characters".into(),
                        cid: None,
                    },
                );
                return;
            }
            if let Some(&id) = self.cids.get(cid) {
                let ack = Pending::Ack {
                    conn,
                    cid: cid.clone(),
                    id,
                };
                match self.pending.back().map(|(last, _, _)| *last) {
                    // The original is not committed yet: acknowledge it no sooner.
                    Some(last) if id <= last => self.enqueue(last, ack),
                    _ => self.release(ack),
                }
                return;
            }
        }
        self.cid = cid.clone();
        run(self, cid);
        self.cid = None;
    }

    pub(super) fn remember_cid(&mut self, cid: String, id: MsgId) {
        if self.config.dedupe_window == 0 {
            return;
        }
        while self.cid_order.len() >= self.config.dedupe_window {
            if let Some(old) = self.cid_order.pop_front() {
                self.cids.remove(&old);
            }
        }
        if self.cids.insert(cid.clone(), id).is_none() {
            self.cid_order.push_back(cid);
        }
    }

    pub(super) fn take_id(&mut self) -> MsgId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A timestamp for a message: the wall clock, never going backwards.
    pub(super) fn stamp(&mut self) -> UnixMillis {
        self.last_ts = self.last_ts.max(self.wall);
        self.last_ts
    }

    /// Delivers an id-bearing event now, or once the store has committed it.
    pub(super) fn sequence(&mut self, id: MsgId, pending: Pending) {
        if self.config.durable || !self.pending.is_empty() {
            if pending.is_held() {
                self.held += 1;
                self.held_bytes += pending.weight();
            }
            self.enqueue(id, pending);
        } else {
            self.release(pending);
        }
    }

    /// Queues `pending` under `id`, with the tag of the request it answers (what
    /// [`Hub::answering`] looks for, and what its release answers).
    pub(super) fn enqueue(&mut self, id: MsgId, pending: Pending) {
        let tag = match &pending {
            Pending::Reply { tag, .. } => *tag,
            other => self.tag_for(other.sender()),
        };
        self.pending.push_back((id, pending, tag));
    }

    /// Releases `pending` as an answer to the request `tag` of its sender: the sender's own
    /// copy of what it causes (an echo) answers that request too.
    pub(super) fn release_for(&mut self, pending: Pending, tag: u64) {
        let running = self.tag.take();
        if tag != 0 {
            self.tag = Some((pending.sender(), tag));
        }
        self.release(pending);
        self.tag = running;
    }

    /// Sequences what is relayed but not kept (a message of tags alone that is no reaction):
    /// released right after what was queued before it, waiting for no commit of its own.
    pub(super) fn sequence_unkept(&mut self, pending: Pending) {
        match self.pending.back() {
            Some(&(last, _, _)) => {
                if pending.is_held() {
                    self.held += 1;
                    self.held_bytes += pending.weight();
                }
                self.enqueue(last, pending);
            }
            None => self.release(pending),
        }
    }

    pub(super) fn release(&mut self, pending: Pending) {
        match pending {
            Pending::Room { msg, from, cid } => {
                let key = names::key(&msg.room);
                let id = msg.id;
                let Some(room) = self.rooms.get_mut(&key) else {
                    return;
                };
                let mut members: Vec<ConnId> = room.members.iter().copied().collect();
                // Sent from outside an open room: the sender's echo all the same.
                if !room.members.contains(&from) && self.conns.contains_key(&from) {
                    members.push(from);
                }
                if !msg.kept() {
                    self.send_from(members, &ServerMsg::Message(msg), Some(from));
                    if let Some(cid) = cid {
                        self.release(Pending::Ack {
                            conn: from,
                            cid,
                            id,
                        });
                    }
                    return;
                }
                if room.history.len() >= self.config.history.max(1)
                    && let Some(old) = room.history.pop_front()
                {
                    room.evicted_through = old.id;
                }
                if self.config.history > 0 {
                    room.history.push_back(msg.clone());
                } else {
                    room.evicted_through = msg.id;
                }
                self.send_from(members, &ServerMsg::Message(msg), Some(from));
                if let Some(cid) = cid {
                    self.release(Pending::Ack {
                        conn: from,
                        cid,
                        id,
                    });
                }
            }
            Pending::Direct { msg, from, to, cid } => {
                // The sender's devices first, then the recipient's; each once.
                let recipients: Vec<ConnId> = to
                    .into_iter()
                    .filter(|c| self.conns.contains_key(c))
                    .collect::<IndexSet<_>>()
                    .into_iter()
                    .collect();
                self.send_from(recipients, &msg, Some(from));
                // Written to oneself over IRC with echo-message: the echo, and the message
                // as received (IRC servers send both; only the echo answers the request).
                let to_self = matches!(&msg, ServerMsg::Direct { from: f, to: t, .. }
                    if names::key(f) == names::key(t));
                let irc_echo = self
                    .conns
                    .get(&from)
                    .is_some_and(|c| matches!(c.wire, Wire::Irc(_)) && c.wire.echoes());
                if to_self && irc_echo {
                    let running = self.tag.take();
                    self.send_from(vec![from], &msg, None);
                    self.tag = running;
                }
                if let (Some(cid), ServerMsg::Direct { id, .. }) = (cid, &msg) {
                    self.release(Pending::Ack {
                        conn: from,
                        cid,
                        id: *id,
                    });
                }
            }
            Pending::Reply { conn, msg, tag } => {
                if self.conns.contains_key(&conn) {
                    let outer = self.tag.replace((conn, tag));
                    self.reply(conn, &msg);
                    self.tag = outer;
                }
            }
            Pending::Ack { conn, cid, id } => {
                if self.conns.contains_key(&conn) {
                    self.reply(conn, &ServerMsg::Ack { cid, id });
                }
            }
            Pending::Topic {
                room_key,
                topic,
                by,
                ts,
                ..
            } => {
                let Some(room) = self.rooms.get_mut(&room_key) else {
                    return;
                };
                room.topic = topic.clone();
                room.topic_set = Some((by.clone(), ts));
                let members: Vec<ConnId> = room.members.iter().copied().collect();
                let msg = ServerMsg::Topic {
                    room: room.name.clone(),
                    topic,
                    by: Some(by),
                    ts: Some(ts),
                };
                self.send(members, &msg);
            }
        }
    }
}
