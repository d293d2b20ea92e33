use resilient_cache::CacheKey;

#[derive(CacheKey)]
enum Region {
    Eu,
    Us,
}

fn main() {}
