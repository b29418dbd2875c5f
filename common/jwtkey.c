/* placeholder */ typedef int parley_placeholder_jwtkey;
