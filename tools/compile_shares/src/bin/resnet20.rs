fn main() {
    println!("{}", compile_shares::exercise::<constnet::ResNet20<f32, 3, 10>>());
}
