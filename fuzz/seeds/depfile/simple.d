b.o: a.c /usr/include/stdc-predef.h
