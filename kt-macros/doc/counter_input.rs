#[kt::actor]
pub struct Counter {
    value: u64,
}

#[kt::actor]
impl Counter {
    pub fn new(start: u64) -> Self {
        Counter { value: start }
    }

    /// Adds `n` and returns the new value.
    pub fn add(&mut self, n: u64) -> u64 {
        self.value += n;
        self.value
    }

    pub async fn get(&self) -> u64 {
        self.value
    }
}
