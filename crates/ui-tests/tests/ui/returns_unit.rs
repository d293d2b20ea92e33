use resilient_cache::cached;

#[cached]
async fn log(line: String) {
    println!("{line}");
}

fn main() {}
