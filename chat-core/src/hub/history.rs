//! History pages: `history` answers, join catch-up, and fitting pages into one line.

use super::*;

impl Hub {
    /// The history a member gets on joining: the latest [`HubConfig::join_history`] messages,
    /// or with `since` what it missed, oldest first, a page at a time.
    pub(super) fn join_history(&mut self, conn: ConnId, key: &str, since: Option<MsgId>) {
        let room = &self.rooms[key];
        let budget = self.page_budget(room);
        let (messages, more, newer, gap) = match since {
            Some(since) => {
                // Catch-up: what was missed, oldest first, a page at a time.
                let start = room.history.partition_point(|m| m.id <= since);
                let (page, cut) = fit(
                    room.history.range(start..),
                    self.config.history_page_max,
                    budget,
                );
                // Missed messages older than memory holds: with a store they are there (a
                // `history` page reaches them: `more`); without one they are gone (`gap`).
                let evicted = room.evicted_through > since;
                (page, evicted, cut, evicted && !self.config.durable)
            }
            None => {
                let (mut page, cut) =
                    fit(room.history.iter().rev(), self.config.join_history, budget);
                page.reverse();
                (page, cut, false, false)
            }
        };
        let history = ServerMsg::History {
            room: room.name.clone(),
            messages,
            more,
            newer,
            gap,
        };
        self.reply(conn, &history);
    }

    /// Bytes of messages that fit in one `history` line within the announced line limit.
    pub(super) fn page_budget(&self, room: &Room) -> usize {
        self.config
            .max_line
            .saturating_sub(128 + room.name.len())
            .max(1)
    }

    /// Answers `history` from memory when the memory holds every message the query could
    /// want, else asks the store ([`Output::LoadHistory`]).
    pub(super) fn cmd_history(&mut self, conn: ConnId, raw: &str, mut query: HistoryQuery) {
        let Some((key, _)) = self.readable_room(conn, raw) else {
            return;
        };
        query.key = key.clone();
        let room = &self.rooms[&key];
        let count = query.limit.max(1);
        let in_range: Vec<&ChatMessage> = room.history.iter().filter(|m| query.admits(m)).collect();
        let selected: Vec<&ChatMessage> = if query.newest {
            in_range[in_range.len().saturating_sub(count)..].to_vec()
        } else {
            in_range.iter().take(count).copied().collect()
        };
        // The store holds older messages than memory does; are any of them wanted?
        let older_wanted = self.config.durable
            && room.evicted_through > 0
            && match room.history.front() {
                None => true,
                Some(first) => {
                    let excluded = query.after.is_some_and(|a| a >= room.evicted_through)
                        || query.after_ts.is_some_and(|t| t >= first.ts);
                    let full = query.newest && selected.len() == count;
                    !(excluded || full)
                }
            };
        if older_wanted {
            self.read_store(conn, query);
            return;
        }
        let more_in_range = in_range.len() > selected.len();
        let budget = self.page_budget(room);
        let (messages, more, newer) = if query.newest {
            let (mut page, cut) = fit(selected.iter().rev().copied(), count, budget);
            page.reverse();
            let older_in_store = self.config.durable && room.evicted_through > 0;
            (page, cut || more_in_range || older_in_store, false)
        } else {
            let (page, cut) = fit(selected.iter().copied(), count, budget);
            // Older messages exist: in memory before the range, or in the store.
            let older = room.history.front().is_some_and(|f| !query.admits(f))
                || (self.config.durable && room.evicted_through > 0);
            (page, older, cut || more_in_range)
        };
        let room = room.name.clone();
        self.reply_history(conn, room, messages, more, newer);
    }

    fn reply_history(
        &mut self,
        conn: ConnId,
        room: String,
        messages: Vec<ChatMessage>,
        more: bool,
        newer: bool,
    ) {
        let msg = ServerMsg::History {
            room,
            messages,
            more,
            newer,
            gap: false,
        };
        self.reply(conn, &msg);
    }

    /// Asks the store for a page or a search, one at a time per connection: a read waits
    /// while another of the same connection's is on its way, and past [`MAX_STORE_READS`]
    /// it is refused with `busy`. Slow reads by a few cannot fill the store's queue.
    fn read_store(&mut self, conn: ConnId, query: HistoryQuery) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.reads.len() >= liveness::MAX_STORE_READS {
            let why = format!(
                "you have {} searches or history pages on their way; wait for them, then try again",
                c.reads.len()
            );
            self.reply(conn, &error(ErrorCode::Busy, &why));
            return;
        }
        let tag = match self.tag {
            Some((asker, tag)) if asker == conn => tag,
            _ => 0,
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.reads.push_back((query.clone(), tag));
        if c.reads.len() == 1 {
            self.outputs.push_back(Output::LoadHistory { conn, query });
        }
    }

    /// A store read of `conn` is answered (or refused): the next one waiting goes out.
    fn store_read_done(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.reads.pop_front();
        if let Some((query, _)) = c.reads.front().cloned() {
            self.outputs.push_back(Output::LoadHistory { conn, query });
        }
    }

    /// The store could not take a read now (its queue is full): the asker hears `busy`.
    pub(super) fn handle_history_busy(&mut self, conn: ConnId, query: &HistoryQuery) {
        let Some(tag) = self.read_tag(conn) else {
            return;
        };
        let outer = self.tag.replace((conn, tag));
        self.history_busy(conn, query);
        self.tag = outer;
    }

    /// The tag of the request whose store read is being answered (the first on its way).
    fn read_tag(&self, conn: ConnId) -> Option<u64> {
        let c = self.conns.get(&conn)?;
        Some(c.reads.front().map_or(0, |(_, tag)| *tag))
    }

    fn history_busy(&mut self, conn: ConnId, query: &HistoryQuery) {
        self.store_read_done(conn);
        let what = if query.search.is_some() {
            "search"
        } else {
            "history page"
        };
        let why = format!("the server is busy with other reads; try the {what} again in a second");
        self.reply(conn, &error(ErrorCode::Busy, &why));
    }

    /// The store's page of history, for whoever asked (if still here and the room too).
    pub(super) fn handle_history_loaded(
        &mut self,
        conn: ConnId,
        query: &HistoryQuery,
        messages: Vec<ChatMessage>,
        more: bool,
    ) {
        let Some(tag) = self.read_tag(conn) else {
            return;
        };
        let outer = self.tag.replace((conn, tag));
        self.history_loaded(conn, query, messages, more);
        self.tag = outer;
    }

    fn history_loaded(
        &mut self,
        conn: ConnId,
        query: &HistoryQuery,
        messages: Vec<ChatMessage>,
        more: bool,
    ) {
        self.store_read_done(conn);
        let Some(room) = self.rooms.get(&query.key) else {
            return;
        };
        let budget = self.page_budget(room);
        let count = query.limit.max(1);
        let (messages, more, newer) = if query.newest {
            let (mut page, cut) = fit(messages.iter().rev(), count, budget);
            page.reverse();
            (page, cut || more, false)
        } else {
            let (page, cut) = fit(messages.iter(), count, budget);
            (page, true, cut || more)
        };
        let room = room.name.clone();
        if let Some(words) = &query.search {
            self.reply_search(conn, room, words.join(" "), messages, more);
            return;
        }
        self.reply_history(conn, room, messages, more, newer);
    }

    pub(super) fn cmd_search(
        &mut self,
        conn: ConnId,
        raw: &str,
        text: &str,
        before: Option<MsgId>,
        limit: u32,
    ) {
        let Some((key, _)) = self.readable_room(conn, raw) else {
            return;
        };
        let words = search_words(text);
        if words.is_empty() || text.len() > 200 {
            self.reply(
                conn,
                &error(
                    ErrorCode::Malformed,
                    "a search is one to eight words, at most 200 bytes",
                ),
            );
            return;
        }
        let query = HistoryQuery {
            key: key.clone(),
            before,
            after: None,
            before_ts: None,
            after_ts: None,
            newest: true,
            limit: (limit as usize).clamp(1, self.config.history_page_max.max(1)),
            search: Some(words),
        };
        // The store searches everything it keeps; without one, memory is everything.
        if self.config.durable {
            self.read_store(conn, query);
            return;
        }
        let room = &self.rooms[&key];
        let mut found: Vec<ChatMessage> = room
            .history
            .iter()
            .rev()
            .filter(|m| query.admits(m))
            .take(query.limit + 1)
            .cloned()
            .collect();
        let name = room.name.clone();
        let more = found.len() > query.limit;
        found.truncate(query.limit);
        found.reverse();
        let words = query.search.unwrap_or_default().join(" ");
        self.reply_search(conn, name, words, found, more);
    }

    /// Search results (given oldest first), sent newest first, cut to fit a line.
    fn reply_search(
        &mut self,
        conn: ConnId,
        room: String,
        query: String,
        oldest_first: Vec<ChatMessage>,
        more: bool,
    ) {
        let budget = self
            .config
            .max_line
            .saturating_sub(160 + room.len() + query.len())
            .max(1);
        let (page, cut) = fit(oldest_first.iter().rev(), oldest_first.len().max(1), budget);
        let msg = ServerMsg::SearchResults {
            room,
            query,
            messages: page,
            more: more || cut,
        };
        self.reply(conn, &msg);
    }
}

/// What a `history` asks for: messages of one room strictly within the bounds given, the
/// newest `limit` of them or the oldest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The room's key.
    pub key: String,
    /// Only ids below this.
    pub before: Option<MsgId>,
    /// Only ids above this.
    pub after: Option<MsgId>,
    /// Only stamps below this.
    pub before_ts: Option<UnixMillis>,
    /// Only stamps above this.
    pub after_ts: Option<UnixMillis>,
    /// The newest within the bounds (else the oldest).
    pub newest: bool,
    /// At most this many.
    pub limit: usize,
    /// For a search: the words every message must have (each as a word prefix, in any case).
    pub search: Option<Vec<String>>,
}

impl HistoryQuery {
    /// Whether a message lies within the bounds.
    pub fn admits(&self, m: &ChatMessage) -> bool {
        self.before.is_none_or(|b| m.id < b)
            && self.after.is_none_or(|a| m.id > a)
            && self.before_ts.is_none_or(|b| m.ts < b)
            && self.after_ts.is_none_or(|a| m.ts > a)
            && self
                .search
                .as_ref()
                .is_none_or(|words| matches_words(&m.text, words))
    }
}

/// True when every word is the start of a word of `text`, compared case-insensitively: the
/// same rule the store's full-text index applies (word prefixes, Unicode case folding).
pub fn matches_words(text: &str, words: &[String]) -> bool {
    let folded = text.to_lowercase();
    let text_words: Vec<&str> = folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().all(|w| {
        let w = w.to_lowercase();
        text_words.iter().any(|t| t.starts_with(&w))
    })
}

/// The words of a search, as the index splits text: letters and digits, lowercased; at most
/// eight.
pub fn search_words(query: &str) -> Vec<String> {
    query
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(str::to_string)
        .collect()
}

/// Takes messages in the order given while they fit in `budget` bytes of JSON (at least one,
/// at most `count`). Returns them and whether any were left.
fn fit<'a>(
    messages: impl Iterator<Item = &'a ChatMessage>,
    count: usize,
    budget: usize,
) -> (Vec<ChatMessage>, bool) {
    let mut page = Vec::new();
    let mut used = 0;
    let mut messages = messages.peekable();
    while let Some(m) = messages.peek() {
        let size = serde_json::to_string(m).map_or(0, |s| s.len() + 1);
        if page.len() >= count || (!page.is_empty() && used + size > budget) {
            break;
        }
        used += size;
        page.push((*m).clone());
        messages.next();
    }
    (page, messages.peek().is_some())
}

/// Takes items while their estimated sizes fit in `budget` (at least one). Returns them and
/// whether any were left.
pub(super) fn fit_by_size<T>(
    items: impl Iterator<Item = T>,
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> (Vec<T>, bool) {
    let mut page = Vec::new();
    let mut used = 0;
    let mut items = items.peekable();
    while let Some(item) = items.peek() {
        let n = size(item);
        if !page.is_empty() && used + n > budget {
            break;
        }
        used += n;
        page.extend(items.next());
    }
    (page, items.peek().is_some())
}
