out/obj/x.o: src/a\ b.cpp include/x.h \
  /usr/include/stdio.h \
  include/$$dollar.h
include/x.h:
