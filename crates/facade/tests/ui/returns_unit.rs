use cache_facade::cached;

#[cached]
async fn log(line: String) {
    println!("{line}");
}

fn main() {}
