use resilient_cache::cached;

#[cached(ttl = 300, namespace = "predictions", stampede_protection = true)]
async fn predict(id: u64) -> String {
    format!("prediction {id}")
}

fn main() {}
