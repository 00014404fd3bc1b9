#[kt::actor]
pub struct Greeter {
    greeting: String,
}

#[kt::actor]
impl Greeter {
    pub fn new() -> Self {
        Greeter { greeting: "hello".into() }
    }

    pub fn greet(&self, who: &str) -> String {
        format!("{} {who}", self.greeting)
    }
}

fn main() {}
