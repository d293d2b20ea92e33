//! [`RuleError`]: what can go wrong with invalidation rules.

use std::fmt;

/// Why a rule set could not be built or an event could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleError {
    /// A template is malformed (unbalanced `{`/`}`, an empty or invalid field name).
    BadTemplate {
        /// The template.
        template: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An event name is empty.
    EmptyEvent,
    /// A rule targets a cache the invalidator does not know.
    UnknownCache(String),
    /// No rule handles this event.
    UnknownEvent(String),
    /// The event lacks a field a rule's template needs.
    UnresolvedField {
        /// The event.
        event: String,
        /// The missing field.
        field: String,
    },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::BadTemplate { template, reason } => {
                write!(f, "invalid template {template:?}: {reason}")
            }
            RuleError::EmptyEvent => f.write_str("an event name is empty"),
            RuleError::UnknownCache(c) => write!(f, "no cache named {c:?} is registered"),
            RuleError::UnknownEvent(e) => write!(f, "no invalidation rule handles event {e:?}"),
            RuleError::UnresolvedField { event, field } => {
                write!(
                    f,
                    "event {event:?} has no field {field:?} needed by its rules"
                )
            }
        }
    }
}

impl std::error::Error for RuleError {}
