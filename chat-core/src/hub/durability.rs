//! The store's side of the hub: what it persists ([`Record`]), what it loads back
//! ([`RestoredRoom`]), commits, and what happens while it fails.

use super::*;

/// Something the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A room message.
    Message {
        /// The message.
        msg: ChatMessage,
        /// The sender's own id for it, kept to recognise a repeat after a restart.
        cid: Option<String>,
    },
    /// A direct message.
    Direct {
        /// The message.
        msg: StoredDirect,
        /// The sender's own id for it.
        cid: Option<String>,
        /// The recipient is an account that is not connected: the message waits for it.
        offline: bool,
    },
    /// The direct messages that waited for an account were delivered.
    OfflineDelivered {
        /// Sequencing id.
        id: MsgId,
        /// The account's name.
        account: String,
    },
    /// An account, made or with a new password: upsert by name.
    Account {
        /// Sequencing id.
        id: MsgId,
        /// The account's name.
        name: String,
        /// Its password hash (PHC string).
        hash: String,
    },
    /// The rooms an account is in and owns, replacing what was stored.
    AccountRooms {
        /// Sequencing id.
        id: MsgId,
        /// The account's name.
        account: String,
        /// Names of the rooms it is in.
        rooms: Vec<String>,
        /// Names of the rooms it owns.
        owned: Vec<String>,
    },
    /// An account's read markers, replacing what was stored.
    ReadMarkers {
        /// Sequencing id.
        id: MsgId,
        /// The account's name.
        account: String,
        /// Conversation key and the newest message read, for each.
        markers: Vec<(String, MsgId)>,
    },
    /// A room's roles, bans, invitations and modes, replacing what was stored.
    RoomSettings {
        /// Sequencing id.
        id: MsgId,
        /// Room name.
        room: String,
        /// The settings.
        settings: RoomSettings,
    },
    /// The server-wide bans, replacing what was stored.
    ServerBans {
        /// Sequencing id.
        id: MsgId,
        /// Every ban in force.
        bans: Vec<Ban>,
    },
    /// An account was deleted.
    AccountDeleted {
        /// Sequencing id.
        id: MsgId,
        /// The account's name.
        account: String,
    },
    /// A topic change. Carries the id it was sequenced under.
    Topic {
        /// Sequencing id (also consumed from the message id space).
        id: MsgId,
        /// Room name.
        room: String,
        /// New topic.
        topic: String,
        /// Who set it.
        by: String,
        /// When.
        ts: UnixMillis,
    },
}

impl Record {
    /// The id the record was sequenced under.
    pub fn id(&self) -> MsgId {
        match self {
            Record::Message { msg, .. } => msg.id,
            Record::Direct { msg, .. } => msg.id,
            Record::Topic { id, .. }
            | Record::Account { id, .. }
            | Record::AccountRooms { id, .. }
            | Record::ReadMarkers { id, .. }
            | Record::OfflineDelivered { id, .. }
            | Record::RoomSettings { id, .. }
            | Record::ServerBans { id, .. }
            | Record::AccountDeleted { id, .. } => *id,
        }
    }
}

/// A room as loaded back from the store on restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoredRoom {
    /// Room name.
    pub name: String,
    /// Its topic, empty if none.
    pub topic: String,
    /// Who set the topic, and when.
    pub topic_set: Option<(String, UnixMillis)>,
    /// Its most recent messages, oldest first.
    pub history: Vec<ChatMessage>,
    /// True when the store holds older messages than `history`.
    pub more: bool,
    /// Its roles, bans, invitations and modes.
    pub settings: RoomSettings,
}

impl Hub {
    /// Loads rooms, topics and history back from the store. `next_id` is one more than the
    /// highest id the store has seen, so ids keep increasing across restarts.
    ///
    /// A stored room whose name the current rules refuse (or that now has the same key as, or
    /// looks like, a room loaded before it) is not loaded: its history stays in the store,
    /// untouched, but nobody can join it. Their names are returned, for the server to log.
    /// Rooms restored with nobody in them start their expiry clock at `now`.
    pub fn restore(
        &mut self,
        now: UnixMillis,
        rooms: Vec<RestoredRoom>,
        next_id: MsgId,
    ) -> Vec<String> {
        self.next_id = self.next_id.max(next_id);
        let mut refused = Vec::new();
        for restored in rooms {
            let key = names::normalize_room(&restored.name)
                .ok()
                .map(|name| names::key(&name));
            match key {
                Some(key)
                    if self.rooms.contains_key(&key) && self.rooms[&key].history.is_empty() =>
                {
                    // The default room, made empty at start: fill it.
                    self.fill_room(&key, restored);
                }
                Some(key)
                    if !self.rooms.contains_key(&key) && self.similar_room(&key).is_none() =>
                {
                    let name = names::normalize_room(&restored.name).unwrap_or_default();
                    self.insert_room(Room::new(name));
                    self.fill_room(&key, restored);
                    self.mark_empty(now, &key);
                }
                _ => refused.push(restored.name),
            }
        }
        refused
    }

    /// Remembers the cids of recently stored messages (oldest first), so that a client
    /// repeating one after a restart gets the original acknowledgement.
    pub fn restore_cids(&mut self, cids: Vec<(String, MsgId)>) {
        for (cid, id) in cids {
            self.remember_cid(cid, id);
        }
    }

    pub(super) fn fill_room(&mut self, key: &str, restored: RestoredRoom) {
        let history_cap = self.config.history;
        let next_id = self.next_id;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        room.topic = restored.topic;
        room.topic_set = restored.topic_set;
        room.settings = restored.settings;
        let skip = restored.history.len().saturating_sub(history_cap);
        if skip > 0 || restored.more {
            let first_kept = restored.history.get(skip).map_or(next_id, |m| m.id);
            room.evicted_through = first_kept.saturating_sub(1);
        }
        room.history = restored.history.into_iter().skip(skip).collect();
    }

    pub(super) fn handle_store_down(&mut self) {
        if self.store_down {
            return;
        }
        self.store_down = true;
        let mut senders: Vec<ConnId> = self
            .pending
            .iter()
            .filter(|(_, p, _)| p.is_held())
            .map(|(_, p, _)| p.sender())
            .filter(|c| self.conns.contains_key(c))
            .collect();
        senders.sort_unstable();
        senders.dedup();
        let notice = error(
            ErrorCode::StoreUnavailable,
            "the server cannot store messages right now; yours are held and will be delivered \
             when storage recovers, and new ones are refused until then",
        );
        self.send(senders, &notice);
    }

    /// Refuses a new message when the store cannot take it (see [`HubConfig::max_held`]).
    pub(super) fn store_can_take(&mut self, conn: ConnId, weight: usize) -> bool {
        if !self.config.durable {
            return true;
        }
        let full = self.held >= self.config.max_held
            || self.held_bytes + weight > self.config.max_held_bytes;
        if !self.store_down && !full {
            return true;
        }
        let why = if self.store_down {
            "the server cannot store messages right now (its storage is failing); try again later"
        } else {
            "too many messages are waiting to be stored; try again in a moment"
        };
        self.reply(conn, &error(ErrorCode::StoreUnavailable, why));
        false
    }

    pub(super) fn handle_committed(&mut self, through: MsgId) {
        // A repeat may wait behind a later id than its own: it is released no earlier than
        // its original, never later than what was queued after it.
        while let Some((id, _, _)) = self.pending.front() {
            if *id > through {
                break;
            }
            let (_, pending, tag) = self.pending.pop_front().expect("checked non-empty");
            if pending.is_held() {
                self.held -= 1;
                self.held_bytes -= pending.weight();
            }
            self.release_for(pending, tag);
        }
    }
}
