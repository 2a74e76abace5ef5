fn main() {
    println!("{}", compile_shares::exercise::<constnet::ResNet18<f32>>());
}
