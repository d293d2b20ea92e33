//! Log events through `tracing` when the `tracing` feature is on, and nothing
//! (no code, no cost) when it is off. Events never carry a raw key or a URL.

/// `tracing::warn!` with the `tracing` feature, nothing without.
macro_rules! log_warn {
    ($($t:tt)*) => {{
        #[cfg(feature = "tracing")]
        {
            ::tracing::warn!($($t)*);
        }
    }};
}

/// `tracing::info!` with the `tracing` feature, nothing without.
macro_rules! log_info {
    ($($t:tt)*) => {{
        #[cfg(feature = "tracing")]
        {
            ::tracing::info!($($t)*);
        }
    }};
}

/// `tracing::error!` with the `tracing` feature, nothing without.
#[allow(unused_macros)]
macro_rules! log_error {
    ($($t:tt)*) => {{
        #[cfg(feature = "tracing")]
        {
            ::tracing::error!($($t)*);
        }
    }};
}

#[allow(unused_imports)]
pub(crate) use {log_error, log_info, log_warn};
