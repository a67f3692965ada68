"""zimage data mover: turns the gzip'd volume objects of an image into the data volume and boot qcow2.

Standard library only (zlib-ng or isal are used when importable) so that it can travel as a zipapp
inside cloud-init user data and run on the mover VSI's stock Python (3.10+).
"""

__version__ = "1"
