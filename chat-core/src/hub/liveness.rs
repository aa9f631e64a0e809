//! Connections: accepting them, pinging the silent, dropping the dead, and saying goodbye.

use super::*;

/// Registration and liveness state of one connection.
#[derive(Debug)]
pub(super) struct Conn {
    /// Display name once registered.
    pub(super) name: Option<String>,
    /// Keys of the rooms it is in, in join order.
    pub(super) rooms: IndexSet<String>,
    /// Time of the last frame received, for liveness.
    pub(super) last_seen: UnixMillis,
    /// When the outstanding ping was sent, if one is.
    pub(super) pinged_at: Option<UnixMillis>,
    /// The one entry this connection has in `Hub::timers`.
    pub(super) check_at: UnixMillis,
    /// Token bucket, in thousandths of a message.
    pub(super) tokens: u64,
    /// When `tokens` was last refilled.
    pub(super) tokens_at: UnixMillis,
    /// Frames held back by flood control, oldest first.
    pub(super) delayed: VecDeque<Queued>,
    /// When the first delayed frame may run; the entry in `Hub::releases`.
    pub(super) release_at: Option<UnixMillis>,
    /// A room this connection is joining that the store is loading: its frames wait in
    /// `delayed` until the room is here, so they keep their order.
    pub(super) loading: Option<String>,
    /// People this connection exchanged direct messages with lately (name key to when), at
    /// most [`DIRECT_PEERS`]: they are not new senders.
    pub(super) direct_peers: HashMap<String, UnixMillis>,
    /// When new senders' first direct messages arrived, within the last minute.
    pub(super) direct_new: VecDeque<UnixMillis>,
    /// How many frames at the front of `delayed` the hub queued itself (a join waiting for its
    /// room, the rooms of an account that just logged in): they cost no flood tokens.
    pub(super) free: usize,
    /// The address it comes from (an IPv6 address cut to its /64), for login throttling.
    pub(super) addr: IpAddr,
    /// The account it is logged in to (its key), if any.
    pub(super) account: Option<String>,
    /// Password work the shell is doing for it; its frames wait in `delayed` meanwhile.
    pub(super) auth: Option<AuthWait>,
    /// Room-creation token bucket, in thousandths of a room.
    pub(super) room_tokens: u64,
    /// When `room_tokens` was last refilled.
    pub(super) room_tokens_at: UnixMillis,
    /// Rooms it created as a guest, against [`HubConfig::max_rooms_per_guest`].
    pub(super) rooms_created: u32,
    /// The wire format it speaks.
    pub(super) wire: Wire,
    /// Its history pages and searches that need the store, oldest first: the first is being
    /// read, the rest wait their turn (at most [`MAX_STORE_READS`]), so one connection keeps
    /// at most one of the store's readers busy. Each with the tag of the request that asked.
    pub(super) reads: VecDeque<(HistoryQuery, u64)>,
    /// When it last sent a message (room or direct), for `whois`'s idle time.
    pub(super) spoke_at: UnixMillis,
    /// When it connected, on the wall clock.
    pub(super) connected_at: UnixMillis,
    /// Its user name and real name (`profile`), when it gave them.
    pub(super) user: Option<String>,
    pub(super) realname: Option<String>,
    /// The operator's account (key) whose rights `oper` gave it.
    pub(super) oper: Option<String>,
    /// The tag of the request whose password is being checked (`auth`).
    pub(super) auth_tag: u64,
    /// Its first `profile` has come (the only one that costs no flood turn).
    pub(super) profiled: bool,
    /// It marked itself a bot (`profile`).
    pub(super) bot: bool,
    /// It has given its real name once (registration's).
    pub(super) named: bool,
    /// It hears of the watched people's away and real-name changes (`watch` `details`).
    pub(super) watch_details: bool,
    /// The names it watches (`watch`), by key.
    pub(super) watching: BTreeSet<String>,
}

/// What waits in a connection's queue for its turn.
#[derive(Debug)]
pub(super) enum Queued {
    /// A frame, run when its turn comes, with its request's tag ([`Input::Request`]).
    Frame(Result<ClientMsg, FrameError>, u64),
    /// A line its IRC adapter answered itself: nothing to run, but it cost a turn.
    Answered,
}

/// Departures `whowas` remembers, across all names.
pub(super) const WHOWAS_KEPT: usize = 1000;

/// Store reads one connection may have on their way; more are refused with `busy`.
pub(super) const MAX_STORE_READS: usize = 3;

impl Conn {
    /// Its frames wait: a room it joins is loading, or its password is being checked.
    pub(super) fn waiting(&self) -> bool {
        self.loading.is_some() || self.auth.is_some()
    }
}

impl Hub {
    pub(super) fn handle_connect(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        addr: IpAddr,
        wire: Wire,
    ) {
        if self.shutting_down || self.conns.contains_key(&conn) {
            return;
        }
        let check_at = now + self.config.register_timeout;
        self.conns.insert(
            conn,
            Conn {
                name: None,
                rooms: IndexSet::new(),
                last_seen: now,
                pinged_at: None,
                check_at,
                tokens: u64::from(self.config.flood_burst) * 1000,
                tokens_at: now,
                delayed: VecDeque::new(),
                release_at: None,
                loading: None,
                direct_peers: HashMap::new(),
                direct_new: VecDeque::new(),
                free: 0,
                addr: addr_key(addr),
                account: None,
                auth: None,
                room_tokens: u64::from(self.config.room_create_burst) * 1000,
                room_tokens_at: now,
                rooms_created: 0,
                wire: Wire::Json,
                reads: VecDeque::new(),
                spoke_at: now,
                connected_at: self.wall,
                user: None,
                realname: None,
                oper: None,
                auth_tag: 0,
                profiled: false,
                bot: false,
                watching: BTreeSet::new(),
                named: false,
                watch_details: false,
            },
        );
        self.timers.insert((check_at, conn));
        self.set_wire(conn, wire);
        self.enforce_server_ban(now, conn);
    }

    pub(super) fn check_liveness(&mut self, now: UnixMillis, conn: ConnId) {
        let (ping_interval, ping_timeout) = (self.config.ping_interval, self.config.ping_timeout);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let verdict = if c.name.is_none() {
            Err(reason::REGISTRATION_TIMEOUT)
        } else {
            match c.pinged_at {
                Some(pinged) if c.last_seen < pinged => {
                    if now >= pinged + ping_timeout {
                        Err(reason::PING_TIMEOUT)
                    } else {
                        Ok((pinged + ping_timeout, false))
                    }
                }
                _ => {
                    let idle_at = c.last_seen + ping_interval;
                    if now >= idle_at {
                        c.pinged_at = Some(now);
                        Ok((now + ping_timeout, true))
                    } else {
                        Ok((idle_at, false))
                    }
                }
            }
        };
        match verdict {
            Ok((next, ping)) => {
                c.check_at = next;
                self.timers.insert((next, conn));
                if ping {
                    let token = now.to_string();
                    self.reply(conn, &ServerMsg::Ping { token });
                }
            }
            Err(why) => self.kick(now, conn, why),
        }
    }

    pub(super) fn handle_shutdown(&mut self, now: UnixMillis) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let mut all: Vec<ConnId> = self.conns.keys().copied().collect();
        all.sort_unstable();
        self.send(
            all.clone(),
            &ServerMsg::Bye {
                reason: reason::SERVER_SHUTDOWN.into(),
            },
        );
        for conn in all {
            self.forget(now, conn);
            self.outputs.push_back(Output::Close {
                conn,
                reason: reason::SERVER_SHUTDOWN.into(),
            });
        }
    }

    /// Says goodbye with a reason, then drops the connection.
    pub(super) fn kick(&mut self, now: UnixMillis, conn: ConnId, why: &str) {
        self.reply(
            conn,
            &ServerMsg::Bye {
                reason: why.to_string(),
            },
        );
        self.drop_conn(now, conn, why, true);
    }

    /// Removes a connection, announcing its quit to everyone who shared a room with it.
    /// `close` asks the shell to close the socket (the hub decided); otherwise the shell
    /// already knows the connection is gone.
    ///
    /// An account with other devices still connected does not quit: it parts the rooms this
    /// was its last device in, with the same reason.
    pub(super) fn drop_conn(&mut self, now: UnixMillis, conn: ConnId, why: &str, close: bool) {
        let Some(name) = self.conns.get(&conn).map(|c| c.name.clone()) else {
            return;
        };
        if name.is_some() && !self.other_devices(conn).is_empty() {
            let rooms: Vec<String> = self.conns[&conn].rooms.iter().cloned().collect();
            for key in rooms {
                if self.name_in_room(&key, conn) {
                    continue;
                }
                let mut members: Vec<ConnId> = self.rooms[&key].members.iter().copied().collect();
                members.retain(|&m| m != conn);
                let ts = self.stamp();
                let msg = ServerMsg::Part {
                    room: self.rooms[&key].name.clone(),
                    name: self.name_of(conn),
                    reason: Some(why.to_string()),
                    ts,
                };
                self.send(members, &msg);
            }
        } else if let Some(name) = name {
            let mut peers = self.peers(conn);
            peers.retain(|&p| p != conn);
            if !peers.is_empty() {
                let ts = self.stamp();
                self.send(
                    peers,
                    &ServerMsg::Quit {
                        name,
                        reason: why.to_string(),
                        ts,
                    },
                );
            }
        }
        self.forget(now, conn);
        if close {
            self.outputs.push_back(Output::Close {
                conn,
                reason: why.to_string(),
            });
        }
    }

    /// Removes every trace of a connection, without announcing anything.
    pub(super) fn forget(&mut self, now: UnixMillis, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        for key in &c.watching {
            self.unwatch(key, conn);
        }
        if c.wire != Wire::Json {
            self.foreign -= 1;
        }
        self.timers.remove(&(c.check_at, conn));
        if let Some(at) = c.release_at {
            self.releases.remove(&(at, conn));
        }
        if let Some(name) = &c.name {
            self.release_name(name, conn);
            // The name is free now (no other device holds it): remember who had it.
            if !self.names.contains_key(&names::key(name)) {
                if self.departed.len() >= WHOWAS_KEPT {
                    self.departed.pop_front();
                }
                let entry = crate::protocol::Departed {
                    name: name.clone(),
                    user: c.user.clone().unwrap_or_else(|| name.clone()),
                    realname: c.realname.clone().unwrap_or_else(|| name.clone()),
                    ts: self.wall,
                };
                self.departed.push_back((names::key(name), entry));
            }
        }
        for key in &c.rooms {
            self.leave_room(now, key, conn);
        }
        if let Some(key) = &c.loading
            && let Some(waiting) = self.loading.get_mut(key)
        {
            waiting.retain(|w| *w != conn);
        }
    }

    /// Every connection sharing at least one room with `conn`, and `conn` itself, sorted.
    pub(super) fn peers(&self, conn: ConnId) -> Vec<ConnId> {
        let mut peers = vec![conn];
        if let Some(c) = self.conns.get(&conn) {
            for key in &c.rooms {
                if let Some(room) = self.rooms.get(key) {
                    peers.extend(room.members.iter().copied());
                }
            }
        }
        peers.sort_unstable();
        peers.dedup();
        peers
    }
}
