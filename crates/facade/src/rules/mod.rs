//! Cross-entity invalidation: "when an order changes, drop that customer's
//! cached views", declared once as rules and fired with one call.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use cache_core::{CacheKey, Codec, DecodeKey};
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::error::Error;

pub(crate) mod error;

pub use error::RuleError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
}

/// A string with `{field}` placeholders (`{{` and `}}` are literal braces).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    fn parse(source: &str) -> Result<Self, RuleError> {
        let bad = |reason| RuleError::BadTemplate {
            template: source.to_owned(),
            reason,
        };
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '.' => {
                                name.push(c);
                            }
                            Some(_) => return Err(bad("field names are [A-Za-z0-9_.]")),
                            None => return Err(bad("unclosed '{'")),
                        }
                    }
                    if name.is_empty() {
                        return Err(bad("empty field name"));
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Field(name));
                }
                '}' => return Err(bad("unmatched '}'")),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        if pieces.is_empty() {
            return Err(bad("empty template"));
        }
        Ok(Template {
            source: source.to_owned(),
            pieces,
        })
    }

    fn render(&self, event: &ChangeEvent) -> Result<String, RuleError> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => match event.fields.get(f) {
                    Some(v) => out.push_str(v),
                    None => {
                        return Err(RuleError::UnresolvedField {
                            event: event.name.clone(),
                            field: f.clone(),
                        });
                    }
                },
            }
        }
        Ok(out)
    }
}

/// What an invalidation removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// Every entry carrying a tag.
    Tag,
    /// Every key whose encoding starts with a prefix.
    Prefix,
}

#[derive(Debug, Clone)]
struct Target {
    cache: String,
    kind: TargetKind,
    template: Template,
}

/// One concrete invalidation an event resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Invalidation {
    /// The cache (by name).
    pub cache: String,
    /// Tag or prefix.
    pub kind: TargetKind,
    /// The rendered tag or prefix.
    pub value: String,
}

/// A change of some entity, with the fields rules may refer to.
///
/// ```
/// use resilient_cache::ChangeEvent;
/// let e = ChangeEvent::new("order.changed").field("order_id", 7).field("customer_id", 42);
/// assert_eq!(e.get("customer_id"), Some("42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    name: String,
    fields: BTreeMap<String, String>,
}

impl ChangeEvent {
    /// An event named `name` (e.g. `"order.changed"`), without fields.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        ChangeEvent {
            name: name.into(),
            fields: BTreeMap::new(),
        }
    }

    /// Adds a field (its `Display` form is what templates insert).
    #[must_use]
    pub fn field(mut self, name: impl Into<String>, value: impl fmt::Display) -> Self {
        self.fields.insert(name.into(), value.to_string());
        self
    }

    /// The event's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A field's value.
    #[must_use]
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

/// The targets of one event, declared in [`RulesBuilder::on`].
#[derive(Debug, Default)]
#[must_use]
pub struct RuleSet {
    targets: Vec<(String, TargetKind, String)>,
}

impl RuleSet {
    /// Invalidate tag `template` (e.g. `"customer:{customer_id}"`) in `cache`.
    pub fn tag(mut self, cache: impl Into<String>, template: impl Into<String>) -> Self {
        self.targets
            .push((cache.into(), TargetKind::Tag, template.into()));
        self
    }

    /// Invalidate key prefix `template` (e.g. `"{customer_id}:"`) in `cache`.
    ///
    /// Prefixes match key *encodings*: end them at a component boundary. With
    /// tuple keys `(customer, order)` encoded as `"42:7"`, `"{customer_id}:"`
    /// removes customer 42's entries; `"{customer_id}"` would also match 420.
    pub fn prefix(mut self, cache: impl Into<String>, template: impl Into<String>) -> Self {
        self.targets
            .push((cache.into(), TargetKind::Prefix, template.into()));
        self
    }
}

/// Declarative cross-entity invalidation: which tags and key prefixes of which
/// caches a change event invalidates. Pure data: [`plan`](Self::plan) resolves an
/// event without touching any cache, so rules are testable on their own;
/// [`Invalidator`] fires them.
///
/// ```
/// use resilient_cache::{ChangeEvent, InvalidationRules, RuleError, TargetKind};
///
/// let rules = InvalidationRules::builder()
///     .on("order.changed", |r| {
///         r.tag("customer_views", "customer:{customer_id}")
///             .prefix("orders", "{customer_id}:")
///     })
///     .build()?;
/// let plan = rules.plan(&ChangeEvent::new("order.changed").field("customer_id", 42))?;
/// assert_eq!(plan[0].value, "customer:42");
/// assert_eq!(plan[1].kind, TargetKind::Prefix);
///
/// // A missing field is an error, never a silent no-op.
/// let err = rules.plan(&ChangeEvent::new("order.changed").field("order_id", 7));
/// assert!(matches!(err, Err(RuleError::UnresolvedField { .. })));
/// # Ok::<(), RuleError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct InvalidationRules {
    by_event: HashMap<String, Vec<Target>>,
}

/// Builds [`InvalidationRules`]; templates are checked at [`build`](Self::build).
#[derive(Debug, Default)]
#[must_use]
pub struct RulesBuilder {
    events: Vec<(String, RuleSet)>,
}

impl RulesBuilder {
    /// The targets event `event` invalidates (several `on` calls for one event add up).
    pub fn on(mut self, event: impl Into<String>, rules: impl FnOnce(RuleSet) -> RuleSet) -> Self {
        self.events.push((event.into(), rules(RuleSet::default())));
        self
    }

    /// Parses every template.
    ///
    /// # Errors
    /// [`RuleError::EmptyEvent`] or [`RuleError::BadTemplate`].
    pub fn build(self) -> Result<InvalidationRules, RuleError> {
        let mut by_event: HashMap<String, Vec<Target>> = HashMap::new();
        for (event, set) in self.events {
            if event.is_empty() {
                return Err(RuleError::EmptyEvent);
            }
            let targets = by_event.entry(event).or_default();
            for (cache, kind, template) in set.targets {
                targets.push(Target {
                    cache,
                    kind,
                    template: Template::parse(&template)?,
                });
            }
        }
        Ok(InvalidationRules { by_event })
    }
}

impl InvalidationRules {
    /// Starts a rule set.
    pub fn builder() -> RulesBuilder {
        RulesBuilder::default()
    }

    /// Whether any rule handles `event`.
    #[must_use]
    pub fn handles(&self, event: &str) -> bool {
        self.by_event.contains_key(event)
    }

    /// The invalidations `event` resolves to, in declaration order, duplicates
    /// removed. All or nothing: one unresolved field fails the whole event.
    ///
    /// # Errors
    /// [`RuleError::UnknownEvent`] or [`RuleError::UnresolvedField`].
    pub fn plan(&self, event: &ChangeEvent) -> Result<Vec<Invalidation>, RuleError> {
        let targets = self
            .by_event
            .get(&event.name)
            .ok_or_else(|| RuleError::UnknownEvent(event.name.clone()))?;
        let mut out: Vec<Invalidation> = Vec::with_capacity(targets.len());
        for t in targets {
            let inv = Invalidation {
                cache: t.cache.clone(),
                kind: t.kind,
                value: t.template.render(event)?,
            };
            if !out.contains(&inv) {
                out.push(inv);
            }
        }
        Ok(out)
    }

    fn caches(&self) -> impl Iterator<Item = &str> {
        self.by_event.values().flatten().map(|t| t.cache.as_str())
    }
}

/// A cache rules can invalidate (every [`Cache`] is one).
pub trait InvalidationTarget: Send + Sync {
    /// The name rules refer to it by.
    fn target_name(&self) -> &str;
    /// Removes every entry tagged `tag`.
    fn invalidate_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, Error>>;
    /// Removes every key starting with `prefix`.
    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, Error>>;
}

impl<K, V, C> InvalidationTarget for Cache<K, V, C>
where
    K: CacheKey + DecodeKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Codec + Clone,
{
    fn target_name(&self) -> &str {
        self.name()
    }
    fn invalidate_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        Box::pin(Cache::invalidate_tag(self, tag))
    }
    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        Box::pin(Cache::invalidate_prefix(self, prefix))
    }
}

/// What firing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FireReport {
    /// The invalidations applied, in order.
    pub applied: Vec<Invalidation>,
    /// Entries removed (as the tiers report them).
    pub removed: u64,
}

/// Rules plus the caches they name: [`fire`](Self::fire) applies an event
/// everywhere (both tiers, and other instances through the bus).
#[derive(Clone)]
pub struct Invalidator {
    rules: Arc<InvalidationRules>,
    caches: Arc<HashMap<String, Arc<dyn InvalidationTarget>>>,
}

impl fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidator")
            .field("rules", &self.rules)
            .field("caches", &self.caches.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Invalidator {
    /// Binds `rules` to `caches`.
    ///
    /// # Errors
    /// [`RuleError::UnknownCache`] when a rule names a cache not given here.
    pub fn new(
        rules: InvalidationRules,
        caches: Vec<Arc<dyn InvalidationTarget>>,
    ) -> Result<Self, RuleError> {
        let caches: HashMap<String, Arc<dyn InvalidationTarget>> = caches
            .into_iter()
            .map(|c| (c.target_name().to_owned(), c))
            .collect();
        if let Some(missing) = rules.caches().find(|c| !caches.contains_key(*c)) {
            return Err(RuleError::UnknownCache(missing.to_owned()));
        }
        Ok(Invalidator {
            rules: Arc::new(rules),
            caches: Arc::new(caches),
        })
    }

    /// The rules.
    #[must_use]
    pub fn rules(&self) -> &InvalidationRules {
        &self.rules
    }

    /// Resolves `event` (all or nothing) and applies every invalidation.
    ///
    /// # Errors
    /// [`Error::Rule`] if the event cannot be resolved (nothing is applied then);
    /// a cache error from an invalidation (fail-closed caches only).
    pub async fn fire(&self, event: &ChangeEvent) -> Result<FireReport, Error> {
        let plan = self.rules.plan(event).map_err(Error::from)?;
        let mut removed = 0;
        for inv in &plan {
            let cache = self
                .caches
                .get(&inv.cache)
                .ok_or_else(|| Error::from(RuleError::UnknownCache(inv.cache.clone())))?;
            removed += match inv.kind {
                TargetKind::Tag => cache.invalidate_tag(&inv.value).await?,
                TargetKind::Prefix => cache.invalidate_prefix(&inv.value).await?,
            };
        }
        Ok(FireReport {
            applied: plan,
            removed,
        })
    }
}
