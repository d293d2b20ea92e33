use resilient_cache::cached;

#[cached(name = "profiles", tags = ["user:{user_id}"])]
async fn profile(id: u64) -> String {
    format!("profile {id}")
}

fn main() {}
