/* unit_thread.h — a unit test's thread takes a P (and uses the pools) or gives it back, as the
 * shim's thread set-up and exit do. */
#ifndef SP_UNIT_THREAD_H
#define SP_UNIT_THREAD_H

#include <stdio.h>
#include <stdlib.h>

#include "pool.h"

static inline void attach(void)
{
    if (!sp_thread_attach(&sp_self)) {
        fprintf(stderr, "no P id\n");
        exit(2);
    }
    sp_self.state = SP_T_ACTIVE;
}

static inline void detach(void)
{
    sp_self.state = SP_T_OFF;
    sp_thread_detach(&sp_self);
}

#endif
