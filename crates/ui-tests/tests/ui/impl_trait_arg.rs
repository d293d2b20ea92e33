use resilient_cache::cached;

#[cached]
async fn length(text: impl AsRef<str>) -> usize {
    text.as_ref().len()
}

fn main() {}
