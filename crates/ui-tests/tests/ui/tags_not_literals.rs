use resilient_cache::cached;

const TAG: &str = "users";

#[cached(name = "profiles", tags = [TAG])]
async fn profile(id: u64) -> String {
    format!("profile {id}")
}

fn main() {}
