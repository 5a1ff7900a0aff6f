//! Context budget: which stored messages still fit the model's window, and what the
//! counting costs.
//!
//! Leading system messages are always kept; the rest is cut into groups (an assistant
//! message with tool calls together with the tool results that follow it, or any other
//! single message) and whole groups are dropped from the oldest end until the rest fits.
//! Tokens are counted with tiktoken's cl100k_base plus a fixed per-message overhead — an
//! estimate, good enough to stay under a window, not an exact bill.
//!
//! Counting is the expensive part (BPE over the whole history, every round of every turn),
//! so [`TokenCounter`] counts each message once: counts are cached by a hash of the
//! message (a stored message keeps its count across rounds and turns), and a large
//! uncounted remainder is counted on tokio's blocking pool, not on an async worker.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::model::{Message, Role};

/// Uncounted text of at least this many bytes is counted on the blocking pool.
const BLOCKING_BYTES: usize = 32 * 1024;

/// Tokens each message costs beyond its text (role, separators), as OpenAI documents.
const PER_MESSAGE_OVERHEAD: u32 = 4;

/// The estimated prompt tokens of one message.
pub fn message_tokens(message: &Message) -> u32 {
    let bpe = tiktoken_rs::cl100k_base_singleton();
    let count = |text: &str| u32::try_from(bpe.count_ordinary(text)).unwrap_or(u32::MAX);
    let mut tokens = PER_MESSAGE_OVERHEAD.saturating_add(count(&message.content));
    for text in [&message.name, &message.tool_call_id].into_iter().flatten() {
        tokens = tokens.saturating_add(count(text));
    }
    for call in &message.tool_calls {
        tokens = tokens
            .saturating_add(count(&call.id))
            .saturating_add(count(&call.name))
            .saturating_add(count(&call.arguments));
    }
    tokens
}

/// Token counts of messages, each counted once: a bounded cache keyed by a hash of the
/// message (two generations: when the newer one is full, the older is dropped, so what is
/// still in use stays and memory stays bounded).
#[derive(Debug)]
pub struct TokenCounter {
    generations: Mutex<Generations>,
    /// Entries per generation.
    capacity: usize,
    /// Messages tokenized so far (cache misses), for tests and metrics.
    counted: AtomicU64,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<u64, u32>,
    previous: HashMap<u64, u32>,
}

impl Default for TokenCounter {
    fn default() -> Self {
        Self::new(64 * 1024)
    }
}

impl TokenCounter {
    /// A counter keeping about `capacity` to `2 * capacity` counts.
    pub fn new(capacity: usize) -> Self {
        Self {
            generations: Mutex::new(Generations::default()),
            capacity: capacity.max(1),
            counted: AtomicU64::new(0),
        }
    }

    /// How many messages were tokenized (not found in the cache) so far.
    pub fn counted(&self) -> u64 {
        self.counted.load(Ordering::Relaxed)
    }

    /// The count of each message, in order. Cached counts are looked up; the rest are
    /// counted here, or on the blocking pool when their text is large (so a long history
    /// does not stall the async worker that serves other requests).
    pub async fn counts(&self, messages: &[Message]) -> Vec<u32> {
        let (mut counts, missing) = self.lookup(messages);
        let bytes: usize = missing.iter().map(|&i| text_bytes(&messages[i])).sum();
        let fresh = if bytes >= BLOCKING_BYTES {
            let owned: Vec<Message> = missing.iter().map(|&i| messages[i].clone()).collect();
            match tokio::task::spawn_blocking(move || {
                owned.iter().map(message_tokens).collect::<Vec<_>>()
            })
            .await
            {
                Ok(fresh) => fresh,
                // The pool is gone (runtime shutting down): count here.
                Err(_) => missing
                    .iter()
                    .map(|&i| message_tokens(&messages[i]))
                    .collect(),
            }
        } else {
            missing
                .iter()
                .map(|&i| message_tokens(&messages[i]))
                .collect()
        };
        self.store(messages, &missing, &fresh);
        for (&i, n) in missing.iter().zip(fresh) {
            counts[i] = n;
        }
        counts
    }

    /// The same, always counted on the calling thread (for synchronous callers).
    pub fn counts_now(&self, messages: &[Message]) -> Vec<u32> {
        let (mut counts, missing) = self.lookup(messages);
        let fresh: Vec<u32> = missing
            .iter()
            .map(|&i| message_tokens(&messages[i]))
            .collect();
        self.store(messages, &missing, &fresh);
        for (&i, n) in missing.iter().zip(fresh) {
            counts[i] = n;
        }
        counts
    }

    /// The cached counts (0 where missing) and the indices of the messages not cached.
    fn lookup(&self, messages: &[Message]) -> (Vec<u32>, Vec<usize>) {
        let mut counts = vec![0; messages.len()];
        let mut missing = Vec::new();
        let mut g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (i, m) in messages.iter().enumerate() {
            let key = key(m);
            if let Some(&n) = g.current.get(&key) {
                counts[i] = n;
            } else if let Some(n) = g.previous.remove(&key) {
                // Still in use: it moves to the newer generation.
                counts[i] = n;
                g.insert(key, n, self.capacity);
            } else {
                missing.push(i);
            }
        }
        (counts, missing)
    }

    fn store(&self, messages: &[Message], missing: &[usize], fresh: &[u32]) {
        if missing.is_empty() {
            return;
        }
        self.counted
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        let mut g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (&i, &n) in missing.iter().zip(fresh) {
            g.insert(key(&messages[i]), n, self.capacity);
        }
    }
}

impl Generations {
    fn insert(&mut self, key: u64, count: u32, capacity: usize) {
        if self.current.len() >= capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, count);
    }
}

/// What a message's count depends on, hashed (far cheaper than tokenizing it).
fn key(m: &Message) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.role.as_str().hash(&mut h);
    m.content.hash(&mut h);
    m.name.hash(&mut h);
    m.tool_call_id.hash(&mut h);
    for call in &m.tool_calls {
        call.id.hash(&mut h);
        call.name.hash(&mut h);
        call.arguments.hash(&mut h);
    }
    h.finish()
}

/// The bytes of text a message's count reads.
fn text_bytes(m: &Message) -> usize {
    m.content.len()
        + m.name.as_ref().map_or(0, String::len)
        + m.tool_call_id.as_ref().map_or(0, String::len)
        + m.tool_calls
            .iter()
            .map(|c| c.id.len() + c.name.len() + c.arguments.len())
            .sum::<usize>()
}

/// The leading system message(s) and the newest groups that fit in `budget_tokens`.
///
/// A budget of 0 means no trimming. The newest group is kept even if it alone exceeds
/// the budget (sending nothing of the conversation would be worse; the upstream then
/// reports the overflow itself).
pub fn trim_to_budget(messages: &[Message], budget_tokens: u32) -> Vec<Message> {
    let counts: Vec<u32> = if budget_tokens == 0 {
        Vec::new()
    } else {
        messages.iter().map(message_tokens).collect()
    };
    trim_counted(messages, &counts, budget_tokens)
}

/// [`trim_to_budget`] with the messages' counts given (`counts[i]` is `messages[i]`'s,
/// e.g. from a [`TokenCounter`]).
pub fn trim_counted(messages: &[Message], counts: &[u32], budget_tokens: u32) -> Vec<Message> {
    if budget_tokens == 0 || counts.len() != messages.len() {
        return messages.to_vec();
    }
    let system_end = messages
        .iter()
        .position(|m| m.role != Role::System)
        .unwrap_or(messages.len());
    let (system, rest) = messages.split_at(system_end);
    let (system_counts, rest_counts) = counts.split_at(system_end);
    let mut used: u32 = system_counts.iter().copied().fold(0, u32::saturating_add);

    let groups = group_starts(rest);
    // Walk groups newest first; `start` is the first kept message of `rest`.
    let mut start = rest.len();
    for (i, &group_start) in groups.iter().enumerate().rev() {
        let group_end = groups.get(i + 1).copied().unwrap_or(rest.len());
        let cost = rest_counts[group_start..group_end]
            .iter()
            .copied()
            .fold(0, u32::saturating_add);
        let is_newest = group_end == rest.len();
        if !is_newest && used.saturating_add(cost) > budget_tokens {
            break;
        }
        used = used.saturating_add(cost);
        start = group_start;
    }
    system.iter().chain(&rest[start..]).cloned().collect()
}

/// Indices where a group begins: tool results belong to the group before them.
fn group_starts(messages: &[Message]) -> Vec<usize> {
    messages
        .iter()
        .enumerate()
        .filter(|(i, m)| *i == 0 || m.role != Role::Tool)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::model::ToolCall;

    fn user(text: &str) -> Message {
        Message::new(Role::User, text)
    }
    fn assistant(text: &str) -> Message {
        Message::new(Role::Assistant, text)
    }
    fn calls(ids: &[&str]) -> Message {
        Message {
            tool_calls: ids
                .iter()
                .map(|id| ToolCall {
                    id: (*id).into(),
                    name: "search".into(),
                    arguments: "{\"q\":\"weather in paris\"}".into(),
                })
                .collect(),
            ..assistant("")
        }
    }
    fn cost(messages: &[Message]) -> u32 {
        messages.iter().map(message_tokens).sum()
    }
    fn contents(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn budget_zero_means_no_trimming() {
        let all = vec![user("a"), assistant("b"), user("c")];
        assert_eq!(trim_to_budget(&all, 0), all);
    }

    #[test]
    fn everything_fits_nothing_dropped() {
        let all = vec![Message::new(Role::System, "sys"), user("a"), assistant("b")];
        assert_eq!(trim_to_budget(&all, 10_000), all);
    }

    #[test]
    fn oldest_dropped_first_and_system_prompt_kept() {
        let system = Message::new(Role::System, "you are a helpful assistant");
        let all = vec![
            system.clone(),
            user("one one one"),
            assistant("two two two"),
            user("three three three"),
            assistant("four four four"),
        ];
        // Room for the system prompt and the last two messages only.
        let budget = cost(&[
            system,
            user("three three three"),
            assistant("four four four"),
        ]);
        let kept = trim_to_budget(&all, budget);
        assert_eq!(
            contents(&kept),
            [
                "you are a helpful assistant",
                "three three three",
                "four four four"
            ]
        );
        assert!(cost(&kept) <= budget);
        // One token less drops one more message.
        let kept = trim_to_budget(&all, budget - 1);
        assert_eq!(
            contents(&kept),
            ["you are a helpful assistant", "four four four"]
        );
    }

    #[test]
    fn tool_call_groups_are_never_split() {
        let all = vec![
            Message::new(Role::System, "sys"),
            user("what is the weather"),
            calls(&["c1", "c2"]),
            Message::tool_result("c1", "sunny and warm today"),
            Message::tool_result("c2", "no rain expected"),
            assistant("it is sunny"),
        ];
        let group_and_after = &all[2..];
        let exact = cost(&all[..1]) + cost(group_and_after);
        // The whole group fits: kept whole.
        assert_eq!(trim_to_budget(&all, exact)[1..], all[2..]);
        // Any less and the group goes as one; no orphan tool result stays behind.
        for budget in [exact - 1, exact - 5, cost(&all[..1]) + cost(&all[4..])] {
            let kept = trim_to_budget(&all, budget);
            assert_eq!(contents(&kept), ["sys", "it is sunny"], "budget {budget}");
        }
    }

    #[test]
    fn newest_group_is_kept_even_when_over_budget() {
        let all = vec![user("old"), calls(&["c1"]), Message::tool_result("c1", "x")];
        let kept = trim_to_budget(&all, 1);
        assert_eq!(kept, all[1..]);
    }

    fn history(n: usize) -> Vec<Message> {
        let mut all = vec![Message::new(Role::System, "be brief")];
        for i in 0..n {
            all.push(user(&format!("question {i} about the weather")));
            all.push(calls(&[&format!("c{i}")]));
            all.push(Message::tool_result(
                format!("c{i}"),
                format!("sunny, {i} degrees"),
            ));
            all.push(assistant(&format!("it is sunny, {i} degrees")));
        }
        all
    }

    #[tokio::test]
    async fn each_message_is_counted_once_across_rounds() {
        let counter = TokenCounter::default();
        let mut conversation = history(5);
        let first = counter.counts(&conversation).await;
        let uncached: Vec<u32> = conversation.iter().map(message_tokens).collect();
        assert_eq!(first, uncached, "the same counts as counting each message");
        assert_eq!(counter.counted(), 21);
        // Next rounds: the history again plus what the round added.
        for round in 0..3 {
            conversation.push(assistant(&format!("round {round}")));
            let counts = counter.counts(&conversation).await;
            let uncached: Vec<u32> = conversation.iter().map(message_tokens).collect();
            assert_eq!(counts, uncached);
            assert_eq!(
                counter.counted(),
                22 + round,
                "only the new message was counted"
            );
        }
        assert_eq!(
            counter.counts_now(&conversation),
            counter.counts(&conversation).await
        );
        assert_eq!(counter.counted(), 24, "nothing counted twice");
        // Trimming with the cached counts keeps what trimming by counting keeps.
        for budget in [0, 1, 40, 120, 10_000] {
            let counts = counter.counts(&conversation).await;
            assert_eq!(
                trim_counted(&conversation, &counts, budget),
                trim_to_budget(&conversation, budget),
                "budget {budget}"
            );
        }
    }

    #[tokio::test]
    async fn a_large_history_is_counted_off_the_async_worker_with_the_same_result() {
        let counter = TokenCounter::default();
        let big: Vec<Message> = (0..40)
            .map(|i| {
                user(&format!(
                    "{i} {}",
                    "lorem ipsum dolor sit amet ".repeat(100)
                ))
            })
            .collect();
        assert!(big.iter().map(text_bytes).sum::<usize>() >= BLOCKING_BYTES);
        let counts = counter.counts(&big).await;
        assert_eq!(counts, big.iter().map(message_tokens).collect::<Vec<_>>());
        assert_eq!(counter.counted(), 40);
        counter.counts(&big).await;
        assert_eq!(counter.counted(), 40);
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_what_is_in_use() {
        let counter = TokenCounter::new(4);
        let a = history(1);
        counter.counts_now(&a);
        assert_eq!(counter.counted(), 5);
        // Many other messages push the first ones out of both generations.
        for i in 0..20 {
            counter.counts_now(&[user(&format!("other {i}"))]);
        }
        let g = counter.generations.lock().unwrap();
        assert!(g.current.len() <= 4 && g.previous.len() <= 4);
        drop(g);
        counter.counts_now(&a);
        assert_eq!(counter.counted(), 5 + 20 + 5, "evicted: counted again");
        // A message in use is kept when it is asked for between others.
        let kept = user("kept");
        counter.counts_now(std::slice::from_ref(&kept));
        for i in 0..6 {
            counter.counts_now(&[user(&format!("more {i}")), kept.clone()]);
        }
        let before = counter.counted();
        counter.counts_now(std::slice::from_ref(&kept));
        assert_eq!(counter.counted(), before, "still cached");
    }

    #[test]
    fn tool_calls_count_towards_the_budget() {
        assert!(message_tokens(&calls(&["c1"])) > message_tokens(&assistant("")));
        assert_eq!(message_tokens(&assistant("")), PER_MESSAGE_OVERHEAD);
    }
}
