//! Rooms: joining (creating or loading from the store), parting, topics, member and room
//! lists, and letting empty rooms go.

use super::*;

/// A chat room: members, topic and recent history.
#[derive(Debug)]
pub struct Room {
    /// Display name.
    pub(super) name: String,
    pub(super) topic: String,
    pub(super) topic_set: Option<(String, UnixMillis)>,
    /// In join order; the fan-out iterates this.
    pub(super) members: IndexSet<ConnId>,
    /// Oldest first, at most `HubConfig::history` long.
    pub(super) history: VecDeque<ChatMessage>,
    /// Highest id of a message that is no longer kept, so catch-up can tell a client that some
    /// of what it missed is gone.
    pub(super) evicted_through: MsgId,
    /// When the last member left; the room's entry in `Hub::expiries`.
    pub(super) empty_since: Option<UnixMillis>,
    /// Roles, bans, invitations and modes.
    pub(super) settings: RoomSettings,
    /// Roles of guests (connections without an account) in the room: the guest who created
    /// it is its operator, as IRC servers make whoever creates a channel, and operators may
    /// give guests operator or voice. Not stored: a guest's role ends when they leave.
    pub(super) guest_roles: HashMap<ConnId, crate::protocol::Role>,
    /// When it came into memory (made, or loaded from the store), on the wall clock.
    pub(super) created: UnixMillis,
}

impl Room {
    pub(super) fn new(name: String) -> Self {
        Self {
            name,
            topic: String::new(),
            topic_set: None,
            members: IndexSet::new(),
            history: VecDeque::new(),
            evicted_through: 0,
            empty_since: None,
            settings: RoomSettings::default(),
            guest_roles: HashMap::new(),
            created: 0,
        }
    }

    /// Display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Rooms nobody is in and with nothing worth keeping are dropped.
    pub(super) fn is_disposable(&self) -> bool {
        self.members.is_empty()
            && self.history.is_empty()
            && self.topic.is_empty()
            && self.settings.is_default()
    }
}

impl Hub {
    pub(super) fn handle_room_loaded(
        &mut self,
        now: UnixMillis,
        key: String,
        room: Option<RestoredRoom>,
    ) {
        let waiting = self.loading.remove(&key).unwrap_or_default();
        match room {
            Some(restored) if !self.rooms.contains_key(&key) => {
                let name = names::normalize_room(&restored.name).ok();
                match name.filter(|n| names::key(n) == key) {
                    Some(name) if self.make_space() => {
                        self.insert_room(Room::new(name));
                        self.fill_room(&key, restored);
                        // Nobody may be left to join it: it expires like any empty room.
                        self.mark_empty(now, &key);
                    }
                    _ => {
                        self.absent.insert(key.clone());
                    }
                }
            }
            Some(_) => {}
            None => {
                self.absent.insert(key.clone());
            }
        }
        for conn in waiting {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.loading = None;
            }
            self.run_delayed(now, conn);
        }
        self.absent.remove(&key);
    }

    pub(super) fn handle_room_load_failed(&mut self, now: UnixMillis, key: &str) {
        let waiting = self.loading.remove(key).unwrap_or_default();
        for conn in waiting {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.loading = None;
            // The command that waited for the room is at the front of the queue.
            c.delayed.pop_front();
            self.reply(
                conn,
                &error(
                    ErrorCode::StoreUnavailable,
                    "the server cannot read that room from its storage right now; try again later",
                ),
            );
            self.run_delayed(now, conn);
        }
    }

    pub(super) fn cmd_join(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        raw: &str,
        since: Option<MsgId>,
        given: Option<&Secret>,
    ) {
        let Some((key, name)) = self.valid_room(conn, raw) else {
            return;
        };
        let already = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.rooms.contains(&key));
        if !already {
            if self
                .conns
                .get(&conn)
                .is_some_and(|c| c.rooms.len() >= self.config.max_rooms_per_conn)
            {
                self.reply(
                    conn,
                    &error(
                        ErrorCode::TooManyRooms,
                        &format!(
                            "you are in {} rooms already; part one first",
                            self.config.max_rooms_per_conn
                        ),
                    ),
                );
                return;
            }
            let existed = self.rooms.contains_key(&key);
            if !existed {
                let again = ClientMsg::Join {
                    room: name.clone(),
                    since,
                    key: given.cloned(),
                };
                if !self.create_room(now, conn, &key, name, again) {
                    return;
                }
                self.created_room(conn, &key);
            } else if !self.may_join(now, conn, &key, given) {
                return;
            }
            let claimed = existed && self.claim_room(conn, &key);
            self.enter(conn, &key);
            self.account_room(conn, &key, true);
            if !existed || claimed {
                self.announce_owner(conn, &key);
            }
        }
        if already && since.is_some() {
            // A catch-up of a room one is in already (the default room the server put a
            // reconnecting client back in): what was missed, not the room's state again.
            self.join_history(conn, &key, since);
        } else {
            self.room_state(conn, &key, since);
        }
        if !already {
            self.share_room(conn, &key);
        }
    }

    /// Tells a room that `conn`'s account owns it now (it made or took over the room).
    fn announce_owner(&mut self, conn: ConnId, key: &str) {
        if self.role_of(conn, key) != crate::protocol::Role::Owner {
            return;
        }
        let members: Vec<ConnId> = self.rooms[key].members.iter().copied().collect();
        let ts = self.stamp();
        let msg = ServerMsg::Role {
            room: self.rooms[key].name.clone(),
            name: self.name_of(conn),
            role: crate::protocol::Role::Owner,
            before: Some(crate::protocol::Role::Member),
            by: None,
            ts,
        };
        self.send(members, &msg);
    }

    /// Asks the store for a room that is not in memory; `again` (the command that needs it)
    /// runs once the room is here, before anything else the connection sent.
    pub(super) fn wait_for_room(&mut self, conn: ConnId, key: &str, again: ClientMsg) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.loading = Some(key.to_string());
        // Its answers still answer the request that asked.
        let tag = match self.tag {
            Some((asker, tag)) if asker == conn => tag,
            _ => 0,
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.delayed
            .push_front(liveness::Queued::Frame(Ok(again), tag));
        let waiting = self.loading.entry(key.to_string()).or_default();
        waiting.push(conn);
        if waiting.len() == 1 {
            self.outputs.push_back(Output::LoadRoom {
                key: key.to_string(),
            });
        }
    }

    /// Puts the account's other devices in a room `conn` is in: they share its rooms.
    pub(super) fn share_room(&mut self, conn: ConnId, key: &str) {
        let max = self.config.max_rooms_per_conn;
        for device in self.other_devices(conn) {
            let c = &self.conns[&device];
            if c.rooms.contains(key) || c.rooms.len() >= max {
                continue;
            }
            self.enter(device, key);
            self.room_state(device, key, None);
        }
    }

    /// Makes `conn` a member. The room hears of the join unless another device of the same
    /// account is in it already; then only `conn` does.
    fn enter(&mut self, conn: ConnId, key: &str) {
        let expiry = self.config.room_expiry;
        let present = self.name_in_room(key, conn);
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if let Some(since) = room.empty_since.take() {
            self.expiries.remove(&(since + expiry, key.to_string()));
        }
        room.members.insert(conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.rooms.insert(key.to_string());
        }
        let to = if present {
            vec![conn]
        } else {
            self.rooms[key].members.iter().copied().collect()
        };
        let ts = self.stamp();
        let name = self.name_of(conn);
        let msg = ServerMsg::Join {
            room: self.rooms[key].name.clone(),
            name: name.clone(),
            ts,
        };
        let others: Vec<ConnId> = to.iter().copied().filter(|&m| m != conn).collect();
        self.send(to, &msg);
        // Someone away who joins is away to the room too (IRC's away-notify does the same).
        if let Some(reason) = self.away.get(&names::key(&name)).cloned()
            && !present
            && !others.is_empty()
        {
            let away = ServerMsg::Away {
                name,
                reason: Some(reason),
            };
            self.send(others, &away);
        }
    }

    /// What a member gets on joining: the topic, the members, and history.
    fn room_state(&mut self, conn: ConnId, key: &str, since: Option<MsgId>) {
        let room = &self.rooms[key];
        let topic = ServerMsg::Topic {
            room: room.name.clone(),
            topic: room.topic.clone(),
            by: room.topic_set.as_ref().map(|(by, _)| by.clone()),
            ts: room.topic_set.as_ref().map(|(_, ts)| *ts),
        };
        self.reply(conn, &topic);
        self.cmd_who(conn, key, None);
        self.join_history(conn, key, since);
        self.send_marker(conn, key);
    }

    /// Brings a room that is not in memory into it: loads it from the store (the join runs
    /// again once it is here), or creates it within the limits. True when it is here now.
    pub(super) fn create_room(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        key: &str,
        name: String,
        again: ClientMsg,
    ) -> bool {
        if let Some(similar) = self.similar_room(key) {
            // A room the asker may not read is not named (a secret room does not exist).
            let why = if self.may_read(conn, &similar) {
                let shown = &self.rooms[&similar].name;
                format!("{name} looks too much like {shown}; join that or pick another name")
            } else {
                format!("{name} looks too much like a room that exists; pick another name")
            };
            self.reply(conn, &error(ErrorCode::InvalidRoom, &why));
            return false;
        }
        if self.config.durable && !self.absent.contains(key) {
            self.wait_for_room(conn, key, again);
            return false;
        }
        if !self.may_create(conn) {
            return false;
        }
        let (burst, per_minute) = (
            self.config.room_create_burst,
            self.config.room_create_per_minute,
        );
        if per_minute > 0 {
            let Some(c) = self.conns.get_mut(&conn) else {
                return false;
            };
            let elapsed = now.saturating_sub(c.room_tokens_at);
            c.room_tokens = (c.room_tokens + elapsed * u64::from(per_minute) / 60)
                .min(u64::from(burst.max(1)) * 1000);
            c.room_tokens_at = now;
            if c.room_tokens < 1000 {
                let wait = (1000 - c.room_tokens) * 60 / u64::from(per_minute);
                self.reply(
                    conn,
                    &error(
                        ErrorCode::RoomCreationThrottled,
                        &format!(
                            "you may create {per_minute} new rooms a minute; try again in {} s",
                            wait.div_ceil(1000).max(1)
                        ),
                    ),
                );
                return false;
            }
        }
        if !self.make_space() {
            self.reply(
                conn,
                &error(
                    ErrorCode::RoomLimit,
                    &format!(
                        "the server holds its maximum of {} rooms; join an existing one",
                        self.config.max_rooms
                    ),
                ),
            );
            return false;
        }
        if per_minute > 0
            && let Some(c) = self.conns.get_mut(&conn)
        {
            c.room_tokens -= 1000;
        }
        self.insert_room(Room::new(name));
        true
    }

    pub(super) fn cmd_part(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        raw: &str,
        why: Option<String>,
    ) {
        let Some((key, _)) = self.member_room(conn, raw) else {
            return;
        };
        // Another device of the same account stays: the room does not see the account leave.
        let present = self.name_in_room(&key, conn);
        let to = if present {
            vec![conn]
        } else {
            self.rooms[&key].members.iter().copied().collect()
        };
        let ts = self.stamp();
        // A muted member leaves without a word.
        let why = why.filter(|r| !r.trim().is_empty() && !self.silenced_in_room(conn, &key));
        let msg = ServerMsg::Part {
            room: self.rooms[&key].name.clone(),
            name: self.name_of(conn),
            reason: why,
            ts,
        };
        self.send(to, &msg);
        if !present {
            self.account_room(conn, &key, false);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.rooms.shift_remove(&key);
        }
        self.leave_room(now, &key, conn);
    }

    pub(super) fn cmd_topic(&mut self, conn: ConnId, raw: &str, topic: Option<String>) {
        let Some(topic) = topic else {
            let Some((key, _)) = self.readable_room(conn, raw) else {
                return;
            };
            let room = &self.rooms[&key];
            let msg = ServerMsg::Topic {
                room: room.name.clone(),
                topic: room.topic.clone(),
                by: room.topic_set.as_ref().map(|(by, _)| by.clone()),
                ts: room.topic_set.as_ref().map(|(_, ts)| *ts),
            };
            self.reply(conn, &msg);
            return;
        };
        let Some((key, _)) = self.member_room(conn, raw) else {
            return;
        };
        if !self.may_set_topic(conn, &key) {
            return;
        }
        if topic.len() > self.config.max_topic || topic.contains(['\n', '\r']) {
            self.reply(
                conn,
                &error(
                    ErrorCode::TopicTooLong,
                    &format!(
                        "a topic is one line of at most {} bytes",
                        self.config.max_topic
                    ),
                ),
            );
            return;
        }
        if !self.store_can_take(conn, 64 + topic.len()) {
            return;
        }
        let id = self.take_id();
        let ts = self.stamp();
        let by = self.name_of(conn);
        if self.config.durable {
            self.outputs.push_back(Output::Store(Record::Topic {
                id,
                room: self.rooms[&key].name.clone(),
                topic: topic.clone(),
                by: by.clone(),
                ts,
            }));
        }
        self.sequence(
            id,
            Pending::Topic {
                room_key: key,
                topic,
                by,
                ts,
                from: conn,
            },
        );
    }

    pub(super) fn cmd_who(&mut self, conn: ConnId, raw: &str, after: Option<String>) {
        let Some((key, _)) = self.readable_room(conn, raw) else {
            return;
        };
        let room = &self.rooms[&key];
        let mut names: Vec<(String, String)> = room
            .members
            .iter()
            .filter_map(|m| self.conns.get(m).and_then(|c| c.name.clone()))
            .map(|n| (names::key(&n), n))
            .collect();
        names.sort_unstable();
        // An account connected from several devices is listed once.
        names.dedup();
        let from = after.as_deref().map(names::key);
        let budget = self.page_budget(room);
        let mut roles = self.member_roles(&key);
        let away = &self.away;
        let (page, more) = fit_by_size(
            names
                .into_iter()
                .filter(|(k, _)| from.as_ref().is_none_or(|f| k > f))
                .map(|(_, n)| n),
            budget,
            |n| {
                n.len()
                    + 3
                    + if roles.contains_key(n) {
                        n.len() + 12
                    } else {
                        0
                    }
                    + away
                        .get(&names::key(n))
                        .map_or(0, |reason| n.len() + reason.len() + 8)
            },
        );
        roles.retain(|n, _| page.contains(n));
        let away = page
            .iter()
            .filter_map(|n| Some((n.clone(), self.away.get(&names::key(n))?.clone())))
            .collect();
        let msg = ServerMsg::Members {
            room: room.name.clone(),
            names: page,
            roles,
            more,
            after,
            away,
            secret: room.settings.modes().secret,
        };
        self.reply(conn, &msg);
    }

    /// Who someone connected is. Of their rooms, only those the asker may read are named (not
    /// a secret room, nor one closed to the asker, unless they are in it); several devices of one account are one
    /// person, in all the rooms of any of them, idle since the last message of any.
    pub(super) fn cmd_whois(&mut self, now: UnixMillis, conn: ConnId, raw: &str) {
        let key = names::key(raw.trim());
        let devices = self.names.get(&key).cloned().unwrap_or_default();
        let Some(&first) = devices.first() else {
            self.reply(
                conn,
                &error(
                    ErrorCode::NoSuchUser,
                    &format!("nobody called {} is connected", raw.trim()),
                ),
            );
            return;
        };
        let mut rooms: Vec<String> = devices
            .iter()
            .filter_map(|d| self.conns.get(d))
            .flat_map(|c| c.rooms.iter().cloned())
            .filter(|k| self.may_see_membership(conn, k))
            .collect();
        rooms.sort_unstable();
        rooms.dedup();
        let roles = rooms
            .iter()
            .filter_map(|k| {
                let role = self.role_of(first, k);
                (role != crate::protocol::Role::Member).then(|| (self.rooms[k].name.clone(), role))
            })
            .collect();
        let spoke = devices
            .iter()
            .filter_map(|d| self.conns.get(d))
            .map(|c| c.spoke_at)
            .max()
            .unwrap_or(now);
        let c = &self.conns[&first];
        let name = self.name_of(first);
        let msg = ServerMsg::Whois {
            user: c.user.clone().unwrap_or_else(|| name.clone()),
            realname: c.realname.clone().unwrap_or_else(|| name.clone()),
            name,
            account: c.account.as_ref().map(|a| self.accounts[a].name.clone()),
            rooms: rooms.iter().map(|k| self.rooms[k].name.clone()).collect(),
            roles,
            away: self.away.get(&key).cloned(),
            operator: self.is_server_op(first),
            bot: c.bot,
            idle: now.saturating_sub(spoke) / 1000,
            since: c.connected_at,
        };
        self.reply(conn, &msg);
    }

    /// Who is in a room (one the asker may read), or who has a name matching a mask: of
    /// those, the people who share a room with the asker, and anyone named exactly (as
    /// `whois` would answer). Server operators find everyone. Each with what `whois` says, and
    /// a room of theirs the asker may see.
    pub(super) fn cmd_people(&mut self, now: UnixMillis, conn: ConnId, target: &str) {
        let target = target.trim();
        let mut found: Vec<(ConnId, Option<String>)> = Vec::new();
        if target.starts_with('#') {
            let Some((key, _)) = self.readable_room(conn, target) else {
                return;
            };
            let room = &self.rooms[&key];
            found.extend(room.members.iter().map(|&m| (m, Some(key.clone()))));
        } else if target.contains(',') {
            // A list of exact names (IRC's USERHOST): anyone connected by each.
            for name in target.split(',').take(10) {
                let Some(&first) = self.names.get(&names::key(name)).and_then(|d| d.first()) else {
                    continue;
                };
                let room = self.conns.get(&first).and_then(|c| {
                    c.rooms
                        .iter()
                        .find(|k| self.may_see_membership(conn, k))
                        .cloned()
                });
                found.push((first, room));
            }
        } else {
            let pattern = names::key(target);
            let exact = !pattern.contains(['*', '?']);
            let op = self.is_server_op(conn);
            let mine: Vec<String> = self
                .conns
                .get(&conn)
                .map(|c| c.rooms.iter().cloned().collect())
                .unwrap_or_default();
            for (name, devices) in &self.names {
                let Some(&first) = devices.first() else {
                    continue;
                };
                if !(exact && *name == pattern || !exact && names::glob(&pattern, name)) {
                    continue;
                }
                let shared = mine.iter().find(|k| {
                    self.rooms
                        .get(*k)
                        .is_some_and(|r| devices.iter().any(|d| r.members.contains(d)))
                });
                if shared.is_none() && !exact && !op {
                    continue;
                }
                let room = shared.cloned().or_else(|| {
                    let c = self.conns.get(&first)?;
                    c.rooms
                        .iter()
                        .find(|k| self.may_see_membership(conn, k))
                        .cloned()
                });
                found.push((first, room));
            }
        }
        let mut people: Vec<crate::protocol::Person> = found
            .into_iter()
            .filter_map(|(who, room)| {
                let c = self.conns.get(&who)?;
                let name = c.name.clone()?;
                let role = room
                    .as_deref()
                    .map_or(crate::protocol::Role::Member, |k| self.role_of(who, k));
                Some(crate::protocol::Person {
                    user: c.user.clone().unwrap_or_else(|| name.clone()),
                    realname: c.realname.clone().unwrap_or_else(|| name.clone()),
                    account: c.account.as_ref().map(|a| self.accounts[a].name.clone()),
                    away: self.away.contains_key(&names::key(&name)),
                    operator: self.is_server_op(who),
                    bot: c.bot,
                    idle: now.saturating_sub(c.spoke_at) / 1000,
                    room: room.map(|k| self.rooms[&k].name.clone()),
                    role,
                    name,
                })
            })
            .collect();
        people.sort_by_cached_key(|p| names::key(&p.name));
        // An account on several devices is one person.
        people.dedup_by(|a, b| names::key(&a.name) == names::key(&b.name));
        let budget = self
            .config
            .max_line
            .saturating_sub(128 + target.len())
            .max(1);
        let (people, more) = fit_by_size(people.into_iter(), budget, |p| {
            p.name.len() * 2 + p.user.len() + p.realname.len() + 100
        });
        let msg = ServerMsg::People {
            target: target.to_string(),
            people,
            more,
        };
        self.reply(conn, &msg);
    }

    /// The server's counts and time.
    pub(super) fn cmd_stats(&mut self, conn: ConnId) {
        let users = self.conns.values().filter(|c| c.name.is_some()).count() as u64;
        let operators = self
            .conns
            .keys()
            .filter(|&&c| self.conns[&c].name.is_some() && self.is_server_op(c))
            .count() as u64;
        let msg = ServerMsg::Stats {
            users,
            max_users: self.peak_users.max(users),
            unregistered: self.conns.len() as u64 - users,
            operators,
            rooms: self.rooms.len() as u64,
            time: self.wall,
        };
        self.reply(conn, &msg);
    }

    /// Who had a name and left, newest first, as many as asked (all kept for 0 or none).
    pub(super) fn cmd_whowas(&mut self, conn: ConnId, raw: &str, count: Option<u32>) {
        let key = names::key(raw.trim());
        let most = count.filter(|&n| n > 0).map_or(usize::MAX, |n| n as usize);
        let entries = self
            .departed
            .iter()
            .rev()
            .filter(|(k, _)| *k == key)
            .map(|(_, e)| e.clone())
            .take(most)
            .collect();
        let msg = ServerMsg::Whowas {
            name: raw.trim().to_string(),
            entries,
        };
        self.reply(conn, &msg);
    }

    /// Keeps the user name and real name a connection gave, cleaned and cut to length.
    pub(super) fn cmd_profile(
        &mut self,
        conn: ConnId,
        user: Option<String>,
        realname: Option<String>,
        bot: Option<bool>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(bot) = bot {
            c.bot = bot;
        }
        if let Some(user) = user {
            let user: String = user
                .chars()
                .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
                .take(10)
                .collect();
            c.user = (!user.is_empty()).then_some(user);
        }
        if let Some(realname) = realname {
            let realname: String = realname
                .chars()
                .filter(|ch| !ch.is_control())
                .take(100)
                .collect();
            let realname = realname.trim().to_string();
            let new = (!realname.is_empty()).then_some(realname);
            let first = !std::mem::replace(&mut c.named, true);
            if c.realname != new {
                c.realname = new;
                // A change after the first (registration) is news to whoever shares a room.
                if !first && let Some(name) = c.name.clone() {
                    let realname = c.realname.clone().unwrap_or_else(|| name.clone());
                    let mut to = self.peers(conn);
                    to.push(conn);
                    to.extend(self.detail_watchers(conn));
                    to.sort_unstable();
                    to.dedup();
                    self.send(to, &ServerMsg::Realname { name, realname });
                }
            }
        }
    }

    pub(super) fn cmd_rooms(&mut self, conn: ConnId, after: Option<String>) {
        let from = after.as_deref().map(names::key);
        let mut rooms: Vec<(String, RoomInfo)> = self
            .rooms
            .iter()
            .filter(|(k, _)| from.as_ref().is_none_or(|f| *k > f) && self.may_read(conn, k))
            .map(|(k, r)| {
                (
                    k.clone(),
                    RoomInfo {
                        name: r.name.clone(),
                        members: self.people_in(r) as u32,
                        topic: r.topic.clone(),
                    },
                )
            })
            .collect();
        rooms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let budget = self.config.max_line.saturating_sub(128).max(1);
        let (rooms, more) = fit_by_size(rooms.into_iter().map(|(_, r)| r), budget, |r| {
            r.name.len() + r.topic.len() + 48
        });
        self.reply(conn, &ServerMsg::RoomList { rooms, more, after });
    }

    pub(super) fn leave_room(&mut self, now: UnixMillis, key: &str, conn: ConnId) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        room.members.shift_remove(&conn);
        room.guest_roles.remove(&conn);
        if !room.members.is_empty() || key == names::key(&self.config.default_room) {
            return;
        }
        if room.is_disposable() {
            self.remove_room(key);
        } else {
            self.mark_empty(now, key);
        }
    }

    /// Starts the expiry clock of a room nobody is in.
    pub(super) fn mark_empty(&mut self, now: UnixMillis, key: &str) {
        let expiry = self.config.room_expiry;
        if key == names::key(&self.config.default_room) {
            return;
        }
        // Without a store, a room with settings would lose them by leaving memory: it stays.
        let durable = self.config.durable;
        if let Some(room) = self.rooms.get_mut(key)
            && room.members.is_empty()
            && room.empty_since.is_none()
            && (durable || room.settings.is_default())
        {
            room.empty_since = Some(now);
            self.expiries.insert((now + expiry, key.to_string()));
        }
    }

    /// Adds a room to memory.
    pub(super) fn insert_room(&mut self, mut room: Room) {
        room.created = self.wall;
        let key = names::key(&room.name);
        self.room_skeletons
            .insert(names::skeleton(&room.name), key.clone());
        self.rooms.insert(key, room);
    }

    /// Lets a room go from memory (its history stays in the store, if there is one).
    pub(super) fn remove_room(&mut self, key: &str) {
        let Some(room) = self.rooms.remove(key) else {
            return;
        };
        if let Some(since) = room.empty_since {
            self.expiries
                .remove(&(since + self.config.room_expiry, key.to_string()));
        }
        let skeleton = names::skeleton(&room.name);
        if self.room_skeletons.get(&skeleton).map(String::as_str) == Some(key) {
            self.room_skeletons.remove(&skeleton);
        }
    }

    /// The key of a room in memory that looks like `key` without being it.
    pub(super) fn similar_room(&self, key: &str) -> Option<String> {
        self.room_skeletons
            .get(&names::skeleton(key))
            .filter(|k| k.as_str() != key)
            .cloned()
    }

    /// Makes room for one more room under [`HubConfig::max_rooms`], letting go of the room that
    /// has been empty the longest. False when every room has members.
    pub(super) fn make_space(&mut self) -> bool {
        if self.rooms.len() < self.config.max_rooms.max(1) {
            return true;
        }
        let Some((_, key)) = self.expiries.first().cloned() else {
            return false;
        };
        self.remove_room(&key);
        true
    }

    pub(super) fn valid_room(&mut self, conn: ConnId, raw: &str) -> Option<(String, String)> {
        match names::normalize_room(raw) {
            Ok(name) => Some((names::key(&name), name)),
            Err(err) => {
                self.reply(
                    conn,
                    &error(
                        ErrorCode::InvalidRoom,
                        &format!("bad room name {raw:?}: {err}"),
                    ),
                );
                None
            }
        }
    }

    pub(super) fn existing_room(&mut self, conn: ConnId, raw: &str) -> Option<(String, String)> {
        let (key, name) = self.valid_room(conn, raw)?;
        if self.rooms.contains_key(&key) {
            Some((key, name))
        } else {
            self.reply(
                conn,
                &error(ErrorCode::NoSuchRoom, &format!("there is no room {name}")),
            );
            None
        }
    }

    /// A room `conn` may send to: one it is in, or an open one (`-n`) it may read and is not
    /// banned from.
    pub(super) fn speaking_room(&mut self, conn: ConnId, raw: &str) -> Option<(String, String)> {
        if let Some(key) = names::normalize_room(raw).ok().map(|r| names::key(&r))
            && self
                .rooms
                .get(&key)
                .is_some_and(|r| r.settings.modes().open)
            && !self
                .conns
                .get(&conn)
                .is_some_and(|c| c.rooms.contains(&key))
            && self.may_read(conn, &key)
            && self.room_ban(&key, conn, None, false).is_none()
        {
            let name = self.rooms[&key].name.clone();
            return Some((key, name));
        }
        self.member_room(conn, raw)
    }

    pub(super) fn member_room(&mut self, conn: ConnId, raw: &str) -> Option<(String, String)> {
        let (key, name) = self.valid_room(conn, raw)?;
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| c.rooms.contains(&key))
        {
            Some((key, name))
        } else {
            self.reply(
                conn,
                &error(ErrorCode::NotInRoom, &format!("you are not in {name}")),
            );
            None
        }
    }

    /// People in a room: an account on several devices counts once.
    pub(super) fn people_in(&self, room: &Room) -> usize {
        if room.members.len() < 2 {
            return room.members.len();
        }
        room.members
            .iter()
            .filter_map(|m| self.conns.get(m).and_then(|c| c.name.as_deref()))
            .collect::<HashSet<_>>()
            .len()
    }
}
