use resilient_cache::cached;

#[cached(ttl = 0)]
async fn square(n: u64) -> u64 {
    n * n
}

fn main() {}
