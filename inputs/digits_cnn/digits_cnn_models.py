"""The three digits models of ``inputs/digits_cnn`` (input shape (N, 1, 8, 8), pixels in [0, 1]).

Importable on its own (needs only torch): the pickled ``resnet.pt`` refers to
``digits_cnn_models.ResBlock``, so loading it needs this folder on ``sys.path``::

    sys.path.insert(0, "inputs/digits_cnn")
    model = torch.load("inputs/digits_cnn/resnet.pt", weights_only=False)

(``leaky_mlp.pt`` and ``lenet.pt`` hold only ``torch.nn`` classes.)
"""
from torch import nn


class ResBlock(nn.Module):
    """``y = relu(x + conv_b(relu(conv_a(x))))``, shape-preserving (3x3 convolutions, padding 1)."""

    def __init__(self, channels):
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu_a = nn.ReLU()
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu_out = nn.ReLU()

    def forward(self, x):
        return self.relu_out(x + self.conv_b(self.relu_a(self.conv_a(x))))


def leaky_mlp():
    """Flatten -> Linear(64, 24) -> LeakyReLU(0.1) -> Linear(24, 16) -> LeakyReLU(0.1) -> Linear(16, 10)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.LeakyReLU(0.1), nn.Linear(24, 16), nn.LeakyReLU(0.1),
                         nn.Linear(16, 10))


def resnet():
    """Conv2d(1, 4, 3, padding=1) -> ReLU -> ResBlock(4) -> ResBlock(4) -> AvgPool2d(2) -> Flatten -> Linear(64, 10)."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), ResBlock(4), ResBlock(4), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 10))


def lenet():
    """Conv2d(1, 6, 3, p=1) -> ReLU -> MaxPool2d(2) -> Conv2d(6, 8, 3, p=1) -> ReLU -> MaxPool2d(2) -> Flatten -> Linear(32, 10)."""
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 2 * 2, 10))


MODELS = {"leaky_mlp": leaky_mlp, "resnet": resnet, "lenet": lenet}
