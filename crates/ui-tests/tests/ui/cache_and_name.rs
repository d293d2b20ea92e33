use std::sync::LazyLock;
use resilient_cache::{cached, Cache};

static SQUARES: LazyLock<Cache<u64, u64>> =
    LazyLock::new(|| Cache::builder("squares").build().expect("config"));

#[cached(cache = SQUARES, namespace = "other")]
async fn square(n: u64) -> u64 {
    n * n
}

fn main() {}
