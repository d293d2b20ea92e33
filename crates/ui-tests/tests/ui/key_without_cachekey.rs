use resilient_cache::Cache;

#[derive(Clone, PartialEq, Eq, Hash)]
struct UserId(u64);

fn main() {
    let _users = Cache::builder("users").build::<UserId, String>();
}
