use resilient_cache::cached;

#[cached(key_type = String)]
async fn square(n: u64) -> u64 {
    n * n
}

fn main() {}
