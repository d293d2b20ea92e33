use resilient_cache::cached;

#[cached]
struct Squares;

fn main() {}
