fn main() {
    use compile_shares::exercise;
    use constnet::*;
    let sums = [
        exercise::<AlexNet<f32>>(),
        exercise::<AlexNet2012<f32>>(),
        exercise::<ZfNet<f32>>(),
        exercise::<Vgg16<f32>>(),
        exercise::<ResNet18<f32>>(),
        exercise::<ResNet20<f32, 3, 10>>(),
        exercise::<GoogLeNet<f32>>(),
        exercise::<DenseNet121<f32>>(),
    ];
    println!("{sums:?}");
}
