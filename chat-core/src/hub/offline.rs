//! Direct messages to an account that is not connected: kept (in the store, with a store) and
//! delivered when the account next connects, in order, under their original ids and times.
//! Only accounts send them (a guest's name means nothing once it is gone, and a mailbox open to
//! anyone is a spam target), and a mailbox holds at most [`MAX_OFFLINE`] messages.

use super::*;

/// Most direct messages waiting for one account.
pub const MAX_OFFLINE: usize = 200;
/// Most of them from one sender: one sender cannot fill a mailbox so that nobody else can
/// leave a message.
pub const MAX_OFFLINE_PER_SENDER: usize = 20;

/// A direct message waiting for its recipient, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDirect {
    /// Server id.
    pub id: MsgId,
    /// Server timestamp.
    pub ts: UnixMillis,
    /// Sender.
    pub from: String,
    /// Recipient (the account's name).
    pub to: String,
    /// Text; empty for a message of tags alone.
    pub text: String,
    /// True for an action.
    pub action: bool,
    /// True for a notice.
    pub notice: bool,
    /// The sender is a bot.
    pub bot: bool,
    /// The sender's tags for the recipient's client.
    pub tags: ClientTags,
}

impl StoredDirect {
    /// Whether it is kept (see [`ChatMessage::kept`]).
    pub fn kept(&self) -> bool {
        crate::protocol::kept(&self.text, &self.tags)
    }

    /// The message as clients receive it.
    pub fn message(&self) -> ServerMsg {
        ServerMsg::Direct {
            id: self.id,
            ts: self.ts,
            from: self.from.clone(),
            to: self.to.clone(),
            text: self.text.clone(),
            action: self.action,
            notice: self.notice,
            bot: self.bot,
            tags: self.tags.clone(),
        }
    }

    /// The record the store keeps of it.
    pub(super) fn record(&self, cid: Option<String>, offline: bool) -> Record {
        Record::Direct {
            msg: self.clone(),
            cid,
            offline,
        }
    }
}

impl Hub {
    /// A direct message `conn` sends, accepted: its id and time, its `cid` remembered, counted,
    /// and handed to the store (marked waiting when `offline`).
    pub(super) fn new_direct(
        &mut self,
        conn: ConnId,
        to: String,
        body: Body,
        cid: &Option<String>,
        offline: bool,
    ) -> StoredDirect {
        let id = self.take_id();
        let ts = self.stamp();
        if let Some(cid) = cid {
            self.remember_cid(cid.clone(), id);
        }
        self.counters.messages += 1;
        let direct = StoredDirect {
            id,
            ts,
            from: self.name_of(conn),
            to,
            text: body.text,
            action: body.action,
            notice: body.notice,
            bot: self.conns.get(&conn).is_some_and(|c| c.bot),
            tags: body.tags,
        };
        if self.config.durable && direct.kept() {
            self.outputs
                .push_back(Output::Store(direct.record(cid.clone(), offline)));
        }
        direct
    }

    /// `conn` wrote to `raw`, who is not connected. True when it was handled here (queued for
    /// an account, or refused); false when nobody of that name exists at all.
    pub(super) fn direct_offline(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        raw: &str,
        body: Body,
        cid: Option<String>,
    ) -> bool {
        let Ok(name) = names::normalize_name(raw) else {
            return false;
        };
        let key = names::key(&name);
        let Some(to) = self.accounts.get(&key).map(|a| a.name.clone()) else {
            return false;
        };
        if self.logged_in(conn).is_none() {
            let why =
                format!("{to} is not connected; log in to an account to leave them a message");
            self.reply(conn, &error(ErrorCode::NoSuchUser, &why));
            return true;
        }
        if !body.kept() {
            // A typing notice or the like means nothing later.
            let why = format!("{to} is not connected");
            self.reply(conn, &error(ErrorCode::NoSuchUser, &why));
            return true;
        }
        if !self.valid_body(conn, &body) {
            return true;
        }
        let from = names::key(&self.name_of(conn));
        let queue = self.offline.get(&key);
        let mine = queue.map_or(0, |q| {
            q.iter().filter(|d| names::key(&d.from) == from).count()
        });
        if queue.is_some_and(|q| q.len() >= MAX_OFFLINE) {
            let why = format!("{to} has {MAX_OFFLINE} messages waiting already; try later");
            self.reply(conn, &error(ErrorCode::ListFull, &why));
            return true;
        }
        if mine >= MAX_OFFLINE_PER_SENDER {
            let why = format!(
                "you have {MAX_OFFLINE_PER_SENDER} messages waiting for {to} already; wait until they read them"
            );
            self.reply(conn, &error(ErrorCode::ListFull, &why));
            return true;
        }
        // A sender new to this mailbox counts against the new-sender limit, as online.
        let limit = self.config.direct_new_senders_per_minute as usize;
        if mine == 0 && limit > 0 && from != key {
            let new = self.offline_new.entry(key.clone()).or_default();
            while new.front().is_some_and(|&t| t + 60_000 <= now) {
                new.pop_front();
            }
            if new.len() >= limit {
                let why = format!(
                    "{to} is getting direct messages from too many new people; try again in a minute"
                );
                self.reply(conn, &error(ErrorCode::DirectThrottled, &why));
                return true;
            }
            new.push_back(now);
            if self.offline_new.len() > 10_000 {
                self.offline_new
                    .retain(|_, n| n.back().is_some_and(|&t| t + 60_000 > now));
            }
        }
        if !self.store_can_take(conn, body.weight()) {
            return true;
        }
        let direct = self.new_direct(conn, to.clone(), body, &cid, true);
        let id = direct.id;
        let msg = direct.message();
        self.offline.entry(key).or_default().push_back(direct);
        self.reply(conn, &ServerMsg::Offline { name: to });
        self.sequence(
            id,
            Pending::Direct {
                msg,
                from: conn,
                to: [vec![conn], self.other_devices(conn)].concat(),
                cid,
            },
        );
        true
    }

    /// The account of `conn` just connected: what waited for it arrives, oldest first, after
    /// anything still being committed.
    pub(super) fn deliver_offline(&mut self, conn: ConnId) {
        let Some(account) = self.logged_in(conn) else {
            return;
        };
        self.offline_new.remove(&account);
        let Some(waiting) = self.offline.remove(&account) else {
            return;
        };
        for d in waiting {
            let msg = d.message();
            match self.pending.back() {
                Some(&(last, _, _)) => {
                    let tag = self.tag_for(conn);
                    self.enqueue(last, delivery::Pending::Reply { conn, msg, tag });
                }
                None => self.reply(conn, &msg),
            }
        }
        if self.config.durable {
            let id = self.take_id();
            let name = self.accounts[&account].name.clone();
            self.outputs
                .push_back(Output::Store(Record::OfflineDelivered {
                    id,
                    account: name,
                }));
        }
    }

    /// Direct messages that were waiting when the server stopped, oldest first. Those for
    /// accounts that no longer exist are dropped.
    pub fn restore_offline(&mut self, waiting: Vec<StoredDirect>) {
        for d in waiting {
            let key = names::key(&d.to);
            if self.accounts.contains_key(&key) {
                self.offline.entry(key).or_default().push_back(d);
            }
        }
    }
}
