use cache_facade::cached;

#[cached]
struct Squares;

fn main() {}
