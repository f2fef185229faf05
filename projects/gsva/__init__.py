# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
