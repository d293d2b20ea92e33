use resilient_cache::cached;

#[cached]
async fn sum(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8) -> u32 {
    [a, b, c, d, e, f, g].iter().map(|&x| u32::from(x)).sum()
}

fn main() {}
