use resilient_cache::cached;

#[cached(ttl = 60, ttl = 30)]
async fn square(n: u64) -> u64 {
    n * n
}

fn main() {}
