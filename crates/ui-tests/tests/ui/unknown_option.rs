use resilient_cache::cached;

#[cached(ttl = 60, stampede_protection = true)]
async fn square(n: u64) -> u64 {
    n * n
}

fn main() {}
