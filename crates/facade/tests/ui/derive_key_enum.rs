use cache_facade::CacheKey;

#[derive(CacheKey)]
enum Region {
    Eu,
    Us,
}

fn main() {}
