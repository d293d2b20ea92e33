use resilient_cache::cached;

#[cached]
async fn echo<T: Clone>(value: T) -> u64 {
    let _ = value;
    1
}

fn main() {}
