"""Fixed ed25519 host keys and their SHA256 fingerprints."""

import base64

import paramiko


# A real key and what `ssh-keygen -lf` printed for it.
PUB = "AAAAC3NzaC1lZDI1NTE5AAAAIBqXec0Jp1kn62a26RBlJ+AsQSpKF2KKMqPKYt8Gxq6a"
PUB_FP = "SHA256:ULp2L/OCzC32lOGUWM516aIrLsZt/talNUAbhPs0PvM"
OTHER_PUB = "AAAAC3NzaC1lZDI1NTE5AAAAINMSyCsRSvtwa7Q4uV/HyuRjZU8dYQEeSU7caJhL7YUZ"
# ssh-keygen -lf of OTHER_PUB.
OTHER_FP = "SHA256:gRYer7NvIEz3//tI+ONjeUj6AtJ3plUagbWV7P25WiE"


def pub_key(blob=PUB):
    return paramiko.PKey.from_type_string("ssh-ed25519", base64.b64decode(blob))
