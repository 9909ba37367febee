"""The networks, one family a file (as gluon-cv's model_zoo): LeNet++ and the original port's LeNet
(``lenet``), the Gluon model zoo's ResNets as a body (``resnet``), and the face recognition field's own
backbones for 112x112 faces, insightface's IR-ResNets (``iresnet``) and MobileFaceNet (``mobilefacenet``).
Each returns (class scores, features) through ``layers.Net``; models.py is the table that names them."""
