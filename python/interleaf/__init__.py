from interleaf._native import *
