use resilient_cache::cached;

#[cached(name = "user:profiles")]
async fn profile(id: u64) -> String {
    format!("profile {id}")
}

fn main() {}
