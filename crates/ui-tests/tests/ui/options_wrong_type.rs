use std::time::Duration;

use resilient_cache::cached;

// `options` takes `MemoOptions`, not `LoadOptions` (that is `get_or_load_with`'s).
#[cached(options = resilient_cache::LoadOptions::new().ttl(Duration::from_secs(5)))]
async fn profile(id: u64) -> String {
    format!("profile {id}")
}

fn main() {}
