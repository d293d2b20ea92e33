use resilient_cache::cached;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Point(u64, u64);

impl Point {
    #[cached]
    async fn scaled(&self, by: u64) -> Self {
        Point(self.0 * by, self.1 * by)
    }
}

fn main() {}
